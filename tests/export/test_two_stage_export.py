"""`faster_rcnn` ONNX export: what the contract test's ONNX parity (tests/models/test_contract.py,
batch 1 and 4, random and `shapes` images) does not cover."""

import jax
import jax.numpy as jnp
import pytest

import export_testlib as tl


def test_fp16_is_refused_clearly():
  pytest.importorskip("jax2onnx")
  from jaxdet import cli, models
  from jaxdet.inference.load import build_detector
  jaxdet_export = cli.import_export_package()
  config = tl.zoo_config("faster_rcnn", image_size=64)
  model = models.build(config.model, num_classes=len(tl.CLASS_NAMES))
  # Zero variables of the right shapes (no init compile): the refusal comes before any tracing.
  variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)))
  detector = build_detector(config, variables, tl.CLASS_NAMES)
  with pytest.raises(ValueError, match="fp16 export is not supported for two-stage"):
    jaxdet_export.export_onnx(detector, None, fp16=True)
