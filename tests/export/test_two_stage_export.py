"""`faster_rcnn` as one ONNX graph (RPN NMS, RoiAlign, RoI head, final NMS): the same detections
as `Detector.predict` at batch 1 and 4, on random and on `shapes` images."""

import dataclasses

import jax
import numpy as np
import pytest

import export_testlib as tl

S = 64


@pytest.fixture(scope="module")
def detector():
  from jaxdet import models
  from jaxdet.inference.load import build_detector
  config = tl.zoo_config("faster_rcnn", image_size=S)
  model = models.build(config.model, num_classes=len(tl.CLASS_NAMES))
  # The module's own init (small regression and class weights, as torchvision's heads): He-normal
  # everywhere (export_testlib.random_variables) makes every class box degenerate, and torchvision
  # (jaxdet too) removes boxes under 0.01 px before the final NMS.
  variables = jax.jit(lambda x: model.init(jax.random.key(0, impl="rbg"), x, train=False))(
      np.zeros((1, S, S, 3), np.float32))
  det = build_detector(config, variables, tl.CLASS_NAMES)
  # A threshold inside the scores of these images, so that parity at the threshold is not vacuous.
  _, scores = det.forward(tl.shapes_images(4, S, S, seed=14))
  threshold = float(np.quantile(np.asarray(scores)[np.asarray(scores) > 0], 0.7))
  return dataclasses.replace(det, postprocess={**det.postprocess, "score_threshold": threshold})


@pytest.mark.slow  # export (3 jax2onnx conversions), onnxruntime session, predict compile
def test_onnx_matches_predict(detector):
  for module in ("jax2onnx", "onnxruntime", "onnx"):
    pytest.importorskip(module, reason=f"ONNX export needs the export extra ({module} missing)")
  from jaxdet import cli
  jaxdet_export = cli.import_export_package()
  onnx_model = jaxdet_export.export_onnx(detector, None)
  ops = {n.op_type for n in onnx_model.graph.node}
  assert {"RoiAlign", "NonMaxSuppression"} <= ops, ops
  threshold = detector.postprocess["score_threshold"]
  for kind, batch in (("random", 1), ("shapes", 4)):
    if kind == "random":
      images = np.random.default_rng(batch).integers(0, 256, (batch, S, S, 3), np.uint8)
    else:
      images = tl.shapes_images(batch, S, S, seed=10 + batch)
    got = tl.as_predict_dict(tl.run_onnx(onnx_model, images))
    want = detector.predict(images)
    assert want["num_detections"].sum() >= 5 * batch, want["num_detections"]  # non-vacuous
    tl.assert_same_detections(got, want, min_score=threshold)


def test_fp16_is_refused_clearly(detector):
  pytest.importorskip("jax2onnx")
  from jaxdet import cli
  jaxdet_export = cli.import_export_package()
  with pytest.raises(ValueError, match="fp16"):
    jaxdet_export.export_onnx(detector, None, fp16=True)
