"""The backbone registry: every backbone gives c2..c5 at strides 4..32, a classifier whose
`backbone` subtree is a detector's, and trains inside RetinaNet and the anchor-free detector."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxdet import models
from jaxdet.models import backbones


def _init_shapes(module, size):
  x = jnp.zeros((1, size, size, 3), jnp.float32)
  return jax.eval_shape(lambda: module.init_with_output(jax.random.key(0), x, train=False))


@pytest.mark.parametrize("name", sorted(backbones.BACKBONES))
def test_features_follow_the_strides(name):
  module = backbones.build_backbone(ml_collections.ConfigDict({"backbone": name}))
  out, _ = _init_shapes(module, 64)
  for key, stride in backbones.STRIDES.items():
    assert out[key].shape[1:3] == (64 // stride, 64 // stride), (key, out[key].shape)
  assert backbones.feature_channels(module) == {k: out[k].shape[-1] for k in backbones.STRIDES}


def test_classifier_backbone_subtree_is_the_detectors():
  cfg = models.default_config("retinanet")
  cfg.update(backbone="densenet121", fpn_features=16, head_convs=1)
  _, detector = _init_shapes(models.build(cfg, num_classes=3), 64)
  logits, classifier = _init_shapes(backbones.build_classifier("densenet121"), 64)
  assert logits.shape == (1, 1000)
  for collection in ("params", "batch_stats"):
    assert (jax.tree.map(lambda a: a.shape, classifier[collection]["backbone"])
            == jax.tree.map(lambda a: a.shape, detector[collection]["backbone"]))


def test_registry_errors_are_clear():
  with pytest.raises(ValueError, match="unknown backbone 'resnet9'"):
    backbones.build_classifier("resnet9")
  with pytest.raises(ValueError, match="frozen_bn is supported for .* not 'alexnet'"):
    backbones.build_backbone(ml_collections.ConfigDict({"backbone": "alexnet", "frozen_bn": True}))


@pytest.mark.slow
@pytest.mark.parametrize("detector", ["retinanet", "yolo_anchor_free"])
def test_densenet121_trains_in_every_detector(detector):
  family = models.get_detector(detector)
  cfg = family.default_config()
  cfg.backbone = "densenet121"  # as --config.model.backbone=densenet121
  if detector == "retinanet":
    cfg.update(fpn_features=32, head_convs=1)
  model = models.build(cfg, num_classes=2)
  images = np.random.default_rng(0).standard_normal((1, 64, 64, 3)).astype(np.float32)
  batch = {"boxes": np.array([[[8., 8., 40., 48.]]], np.float32),
           "classes": np.zeros((1, 1), np.int32), "box_mask": np.ones((1, 1), bool)}
  # Jitted init with an rbg key: eager init of DenseNet-121 runs op by op (minutes on 2 cores).
  key = jax.random.key(0, impl="rbg")
  variables = jax.jit(lambda k: model.init(k, images, train=False))(key)

  def step(params, batch_stats):
    def loss_of(p):
      preds, upd = model.apply({"params": p, "batch_stats": batch_stats}, images, train=True,
                               mutable=["batch_stats"])
      return family.loss_fn(preds, batch, config=cfg)[0], upd
    (loss, upd), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    return loss, jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads), upd["batch_stats"]

  args = (variables["params"], variables["batch_stats"])
  loss, params, _ = jax.jit(step)(*args)
  assert np.isfinite(float(loss))
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), params["backbone"],
                       variables["params"]["backbone"])
  assert any(jax.tree.leaves(moved))
