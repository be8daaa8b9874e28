"""SSD specifics: the loss equals torchvision's `SSD.compute_loss` (matching, hard negative mining,
smooth-L1 on (10, 10, 5, 5) deltas), images without boxes, tiny inputs."""

import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet import models
from jaxdet.models.detectors import ssd
from jaxdet.ops import anchors as anchor_ops

S = 64


def _anchors():
  """SSD default boxes of the tiny config's 8, 4, 2, 1 px maps at 64 px: [380, 4]."""
  cfg = ssd.test_config()
  return anchor_ops.ssd_default_boxes_xyxy(S, [8, 4, 2, 1], aspect_ratios=cfg.aspect_ratios)


def _inputs(seed, *, num_boxes):
  rng = np.random.default_rng(seed)
  anchors = _anchors()
  b, a, m, c = 2, anchors.shape[0], 4, 3
  xy = rng.uniform(0, 40, (b, m, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(6, 24, (b, m, 2))], -1).astype(np.float32)
  mask = np.arange(m)[None, :] < np.asarray(num_boxes)[:, None]
  preds = {"cls_logits": rng.normal(0, 2, (b, a, c + 1)).astype(np.float32),
           "box_deltas": rng.normal(0, 1, (b, a, 4)).astype(np.float32), "anchors": anchors}
  batch = {"boxes": boxes, "classes": rng.integers(0, c, (b, m)).astype(np.int32),
           "box_mask": mask}
  return preds, batch


@pytest.mark.parametrize("num_boxes", [(3, 1), (4, 0)], ids=["boxes", "one_image_empty"])
def test_loss_equals_torchvision_compute_loss(num_boxes):
  torch = pytest.importorskip("torch")
  pytest.importorskip("torchvision")
  from torchvision.models.detection import _utils as det_utils
  from torchvision.models.detection.ssd import SSD
  from torchvision.ops import box_iou
  preds, batch = _inputs(0, num_boxes=num_boxes)
  loss, metrics = jax.jit(lambda p, b: ssd.loss_fn(p, b, config=ssd.test_config()))(preds, batch)

  anchors = torch.from_numpy(preds["anchors"])
  targets, matched = [], []
  for i in range(2):
    keep = batch["box_mask"][i]
    t = {"boxes": torch.from_numpy(batch["boxes"][i][keep]),
         "labels": torch.from_numpy(batch["classes"][i][keep].astype(np.int64) + 1)}
    targets.append(t)
    matched.append(det_utils.SSDMatcher(0.5)(box_iou(t["boxes"], anchors)) if keep.any()
                   else torch.full((anchors.shape[0],), -1, dtype=torch.int64))
  fake = types.SimpleNamespace(box_coder=det_utils.BoxCoder((10.0, 10.0, 5.0, 5.0)),
                               neg_to_pos_ratio=3.0)
  ref = SSD.compute_loss(fake, targets, {"cls_logits": torch.from_numpy(preds["cls_logits"]),
                                         "bbox_regression": torch.from_numpy(preds["box_deltas"])},
                         [anchors, anchors], matched)
  np.testing.assert_allclose(metrics["cls_loss"], ref["classification"].item(), rtol=1e-5)
  np.testing.assert_allclose(metrics["box_loss"], ref["bbox_regression"].item(), rtol=1e-5)
  np.testing.assert_allclose(loss, ref["classification"].item() + ref["bbox_regression"].item(),
                             rtol=1e-5)


def test_no_boxes_at_all_gives_zero_finite_loss_and_gradients():
  preds, batch = _inputs(1, num_boxes=(0, 0))
  grad_fn = jax.jit(jax.value_and_grad(
      lambda p: ssd.loss_fn(p, batch, config=ssd.test_config()), has_aux=True))
  (loss, metrics), grads = grad_fn({k: jnp.asarray(v) for k, v in preds.items()})
  # torchvision keeps 3 x num_positives negatives: none without positives.
  assert float(loss) == 0.0 and float(metrics["num_fg"]) == 0.0
  chex.assert_tree_all_finite(grads)


def test_hard_negatives_are_the_highest_losses_three_per_positive():
  ce = jnp.asarray([[0.1, 5.0, 0.3, 4.0, 2.0, 9.0, 0.2, 1.0]])
  positive = jnp.asarray([[False, False, False, False, False, True, False, False]])
  mask = ssd.hard_negative_mask(ce, positive, neg_to_pos_ratio=3.0)
  np.testing.assert_array_equal(mask[0], [False, True, False, True, True, False, False, False])


def test_tiny_images_predict_and_a_too_small_input_is_a_clear_error():
  from jaxdet.inference.load import build_detector
  from jaxdet.train import config as config_lib
  config = config_lib.base_config()
  config.model = models.default_config("ssd")
  config.model.update(ssd.test_config())
  config.image_size = S
  ssd300 = models.build(ssd.default_config(), num_classes=2)  # shapes only, nothing compiled
  with pytest.raises(ValueError, match="64x64 is too small for SSD's extra layer 2"):
    jax.eval_shape(lambda: ssd300.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
  model = models.build(config.model, num_classes=2)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, S, S, 3)),
                                             train=False))
  rng = np.random.default_rng(0)  # any weights: only the output geometry is checked
  variables = jax.tree.map(lambda x: jnp.asarray(rng.normal(0, 0.1, x.shape), x.dtype), shapes)
  detector = build_detector(config, variables, ("a", "b"))
  tiny = [np.full((1, 1, 3), 200, np.uint8), np.zeros((3, 2, 3), np.uint8)]
  out = detector.predict(tiny)  # stretched to S x S, boxes mapped back into each tiny image
  assert out["boxes"].shape == (2, config.postprocess.max_detections, 4)
  for i, (h, w) in enumerate([(1, 1), (3, 2)]):
    assert np.all(out["boxes"][i, :, 0::2] <= w) and np.all(out["boxes"][i, :, 1::2] <= h)
    assert np.all(out["boxes"][i] >= 0)
