"""The detector contract (`jaxdet.models.registry.DetectorFamily`), for every registered family.

Each family is checked at its tiny `test_config()`: output shapes under jit, a finite loss with no
ground truth, the loss falling over a few SGD steps on a fixed batch (slow), and ONNX parity with
`Detector.predict` (slow; skipped with a printed reason without the export extra).
"""

import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models_testlib

from jaxdet import models
from jaxdet.models import registry
from jaxdet.train import step as step_lib

S = 64
C = 3
FAMILIES = registry.names()


def _batch(empty=False):
  """Targets for 2 images of S x S: two boxes on the first image, one on the second."""
  batch = {"boxes": jnp.asarray([[[4., 6., 30., 40.], [30., 20., 60., 50.], [0., 0., 0., 0.]],
                                 [[10., 10., 50., 30.], [0., 0., 0., 0.], [0., 0., 0., 0.]]]),
           "classes": jnp.asarray([[1, 2, 0], [0, 0, 0]], jnp.int32),
           "box_mask": jnp.asarray([[True, True, False], [True, False, False]])}
  if empty:
    batch["box_mask"] = jnp.zeros_like(batch["box_mask"])
  return batch


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
  """(family, model config, module, variables, images float32 [2, S, S, 3])."""
  fam = registry.get(request.param)
  cfg = fam.test_config()
  model = models.build(cfg, num_classes=C)
  images = jax.random.normal(jax.random.key(1), (2, S, S, 3))
  # rbg keys compile init several times faster than threefry on CPU.
  variables = jax.jit(lambda x: model.init(jax.random.key(0, impl="rbg"), x, train=False))(images)
  return fam, cfg, model, variables, images


@pytest.fixture(scope="module")
def train_forward(family):
  """The jitted train-mode forward, called as the trainer calls it (targets and RNG streams)."""
  _, _, model, variables, images = family

  @jax.jit
  def forward(batch):
    targets = {k: batch[k] for k in step_lib.TARGET_KEYS}
    preds, _ = model.apply(variables, images, train=True, targets=targets,
                           mutable=["batch_stats"], rngs=step_lib.forward_rngs(jax.random.key(2)))
    return preds

  return forward


@pytest.mark.parametrize("name", FAMILIES)
def test_protocol_and_configs(name):
  fam = registry.get(name)
  assert isinstance(fam, registry.DetectorFamily)
  assert models.get_detector(name) is fam and getattr(models, name) is fam
  assert fam.default_config().name == name and fam.test_config().name == name
  assert registry.canonical_name(name) == name


def test_output_shapes_under_jit(family):
  fam, cfg, model, variables, images = family
  preds = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)
  boxes, scores = jax.jit(lambda p: fam.decode(p, image_size=S, config=cfg))(preds)
  a = scores.shape[1]
  chex.assert_shape(scores, (2, a, C))
  assert boxes.shape in ((2, a, 4), (2, a, C, 4)), boxes.shape  # class-agnostic or per class
  chex.assert_type([boxes, scores], [jnp.float32, jnp.float32])
  chex.assert_tree_all_finite((boxes, scores))
  assert float(scores.min()) >= 0 and float(scores.max()) <= 1
  assert float(boxes.min()) >= 0 and float(boxes.max()) <= S  # clipped to the input
  eager_boxes, eager_scores = fam.decode(preds, image_size=S, config=cfg)
  np.testing.assert_allclose(eager_boxes, boxes, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(eager_scores, scores, rtol=1e-5, atol=1e-6)


def test_finite_loss_without_ground_truth(family, train_forward):
  fam, cfg, *_ = family
  batch = _batch(empty=True)
  preds = train_forward(batch)
  (loss, metrics), grads = jax.jit(jax.value_and_grad(
      lambda p: fam.loss_fn(p, batch, config=cfg), has_aux=True))(preds)
  chex.assert_shape(loss, ())
  assert np.isfinite(float(loss)) and float(loss) >= 0, float(loss)
  assert all(np.shape(v) == () and np.isfinite(float(v)) for v in metrics.values()), metrics
  chex.assert_tree_all_finite(grads)


@pytest.mark.slow  # ~20-45 s per family on a loaded 2-core CPU (one train-step compile)
def test_loss_falls_on_a_fixed_batch(family):
  fam, cfg, model, variables, images = family
  history = models_testlib.sgd_loss_history(model, fam.loss_fn, cfg, variables, images, _batch(),
                                            learning_rate=0.01)
  assert all(np.isfinite(history)), history
  assert history[-1] < 0.85 * history[0], history


@pytest.mark.slow  # ~40 s per family (export, onnxruntime session, predict compile)
def test_onnx_parity_with_predict(family):
  for module in ("jax2onnx", "onnxruntime", "onnx"):
    pytest.importorskip(module, reason=f"ONNX parity needs the export extra ({module} missing)")
  from jaxdet import cli
  jaxdet_export = cli.import_export_package()  # this checkout's export/ folder
  import export_testlib as tl
  fam = family[0]
  detector = tl.zoo_detector(fam.name, image_size=S)
  onnx_model = jaxdet_export.export_onnx(detector, None)
  threshold = detector.postprocess["score_threshold"]
  for kind, batch in (("random", 1), ("shapes", 4)):
    if kind == "random":
      images = np.random.default_rng(batch).integers(0, 256, (batch, S, S, 3), np.uint8)
    else:
      images = tl.shapes_images(batch, S, S, seed=10 + batch)
    got = tl.as_predict_dict(tl.run_onnx(onnx_model, images))
    want = detector.predict(images)
    assert want["num_detections"].sum() >= 5 * batch, want["num_detections"]  # non-vacuous
    assert want["scores"][want["scores"] > 0].min() >= threshold
    tl.assert_same_detections(got, want, min_score=threshold)


# --- The registry itself.


def _family(**overrides):
  members = dict(name="dummy", default_config=lambda: None, test_config=lambda: None,
                 build=lambda config, *, num_classes: None,
                 loss_fn=lambda preds, batch, *, config: None,
                 decode=lambda preds, *, image_size, config=None: None)
  members.update(overrides)
  return types.SimpleNamespace(**{k: v for k, v in members.items() if v is not ...})


@pytest.mark.parametrize("member", ["default_config", "test_config", "build", "loss_fn", "decode"])
def test_a_family_missing_a_member_is_refused_naming_it(member):
  with pytest.raises(TypeError, match=f"`{member}`"):
    registry.register(_family(**{member: ...}))
  assert "dummy" not in registry.names()


def test_register_checks_keywords_names_and_clashes():
  with pytest.raises(TypeError, match="num_classes"):
    registry.register(_family(build=lambda config: None))
  with pytest.raises(TypeError, match="name"):
    registry.register(_family(name="no such name"))
  with pytest.raises(ValueError, match="already registered"):
    registry.register(_family(name="retinanet"))
  with pytest.raises(ValueError, match="alias"):
    registry.register(_family(name="yolo"))
  fam = registry.register(_family())
  try:
    assert registry.get("dummy") is fam and "dummy" in registry.names()
  finally:
    registry.unregister("dummy")
  assert "dummy" not in registry.names()


def test_unknown_name_lists_the_registered_ones():
  with pytest.raises(ValueError, match="unknown model 'nope'.*retinanet"):
    models.get_detector("nope")
