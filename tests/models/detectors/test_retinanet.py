"""RetinaNet: shapes, init, loss vs a NumPy reference, empty ground truth, decode, frozen BN.

Training (the loss falls), jit and ONNX parity: tests/models/test_contract.py.
"""

import re

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet import models
from jaxdet.models.detectors import retinanet
from jaxdet.ops import anchors as anchor_ops

S = 64
C = 3


def _config(**kw):
  cfg = retinanet.default_config()
  cfg.update(backbone="resnet18", backbone_width=8, fpn_features=16, head_convs=2, **kw)
  return cfg


@pytest.fixture(scope="module")
def setup():
  cfg = _config()
  model = models.build(cfg, num_classes=C)
  x = jax.random.normal(jax.random.key(1), (2, S, S, 3))
  # rbg keys compile init several times faster than threefry on CPU.
  variables = jax.jit(lambda x: model.init(jax.random.key(0, impl="rbg"), x, train=False))(x)
  return cfg, model, variables, x


@pytest.fixture(scope="module")
def eval_preds(setup):
  _, model, variables, x = setup
  return jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)


def _batch():
  return {"boxes": jnp.asarray([[[4., 6., 30., 40.], [30., 20., 60., 50.], [0., 0., 0., 0.]],
                                [[0., 0., 0., 0.]] * 3]),
          "classes": jnp.asarray([[1, 2, 0], [0, 0, 0]], jnp.int32),
          "box_mask": jnp.asarray([[True, True, False], [False, False, False]])}


def test_output_shapes_anchors_and_prior(setup, eval_preds):
  _, _, variables, _ = setup
  preds = eval_preds
  anchors = anchor_ops.retinanet_anchors_xyxy(S)
  num_anchors = anchors.shape[0]
  chex.assert_shape([preds["cls_logits"], preds["box_deltas"], preds["anchors"]],
                    [(2, num_anchors, C), (2, num_anchors, 4), (num_anchors, 4)])
  chex.assert_type([preds["cls_logits"], preds["box_deltas"]], [jnp.float32, jnp.float32])
  np.testing.assert_array_equal(preds["anchors"], anchors)
  bias = variables["params"]["cls_head"]["out"]["bias"]
  np.testing.assert_allclose(jax.nn.sigmoid(bias), 0.01, rtol=1e-5)


@pytest.mark.parametrize("size", [S, 100])
def test_level_sizes_slice_the_anchors_by_level(setup, size):
  """`level_sizes` (the per-level pre-NMS top-k's slices of A) equals what the model produces."""
  cfg, model, variables, _ = setup
  preds = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables,
                         jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
  sizes = retinanet.level_sizes(cfg, size)
  assert len(sizes) == len(cfg.strides) and sum(sizes) == preds["cls_logits"].shape[1]
  per_cell = len(cfg.anchor_sizes[0]) * len(cfg.aspect_ratios)
  for n, stride in zip(sizes, cfg.strides):
    assert n == per_cell * (-(-size // stride)) ** 2


def _np_iou(a, b):
  lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
  inter = max(rb[0] - lt[0], 0) * max(rb[1] - lt[1], 0)
  return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _np_loss(logits, deltas, anchors, boxes, classes, mask, box_loss):
  """torchvision RetinaNet semantics, normalised by the batch's total positives."""
  cls_sum = box_sum = 0.0
  num_fg = 0
  for b in range(logits.shape[0]):
    gts = [g for g in range(boxes.shape[1]) if mask[b, g]]
    best_per_gt = [max(_np_iou(boxes[b, g], anc) for anc in anchors) for g in gts]
    for a in range(anchors.shape[0]):
      target = np.zeros(C)
      ious = [_np_iou(boxes[b, g], anchors[a]) for g in gts]
      state, g = "neg", None
      if ious:
        best = int(np.argmax(ious))
        if ious[best] >= 0.5:
          state, g = "pos", gts[best]
        elif ious[best] >= 0.4:
          state = "ignore"
        # low-quality matches: anchor attaining some gt's best IoU
        if any(ious[j] == best_per_gt[j] for j in range(len(gts))):
          state, g = "pos", gts[best]
      if state == "ignore":
        continue
      if state == "pos":
        num_fg += 1
        target[classes[b, g]] = 1
        gt = boxes[b, g]
        aw, ah = anchors[a, 2] - anchors[a, 0], anchors[a, 3] - anchors[a, 1]
        ax, ay = anchors[a, 0] + aw / 2, anchors[a, 1] + ah / 2
        gw, gh = gt[2] - gt[0], gt[3] - gt[1]
        gx, gy = gt[0] + gw / 2, gt[1] + gh / 2
        if box_loss == "l1":
          t = np.array([(gx - ax) / aw, (gy - ay) / ah, np.log(gw / aw), np.log(gh / ah)])
          box_sum += np.abs(deltas[b, a] - t).sum()
        else:
          d = deltas[b, a]
          cx, cy = d[0] * aw + ax, d[1] * ah + ay
          w, h = np.exp(d[2]) * aw, np.exp(d[3]) * ah
          p = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
          iou = _np_iou(p, gt)
          lt, rb = np.minimum(p[:2], gt[:2]), np.maximum(p[2:], gt[2:])
          area_c = np.prod(rb - lt)
          union = (p[2] - p[0]) * (p[3] - p[1]) + gw * gh - iou * 0
          inter = iou * union / (1 + iou)
          union = union - inter
          box_sum += 1 - (iou - (area_c - union) / area_c)
      pr = 1 / (1 + np.exp(-logits[b, a]))
      ce = -(target * np.log(pr) + (1 - target) * np.log(1 - pr))
      p_t = pr * target + (1 - pr) * (1 - target)
      cls_sum += ((0.25 * target + 0.75 * (1 - target)) * ce * (1 - p_t)**2).sum()
  n = max(num_fg, 1)
  return cls_sum / n, box_sum / n, num_fg


@pytest.mark.parametrize("box_loss", ["l1", "giou"])
def test_loss_matches_numpy_reference(setup, box_loss):
  cfg, _, _, _ = setup
  rng = np.random.default_rng(0)
  anchors = anchor_ops.retinanet_anchors_xyxy(32)
  A = anchors.shape[0]
  preds = {"cls_logits": jnp.asarray(rng.normal(size=(2, A, C)), jnp.float32),
           "box_deltas": jnp.asarray(rng.normal(size=(2, A, 4)) * 0.2, jnp.float32),
           "anchors": jnp.asarray(anchors)}
  batch = {"boxes": jnp.asarray([[[2., 3., 20., 28.], [14., 10., 31., 30.]],
                                 [[5., 5., 12., 12.], [0., 0., 0., 0.]]]),
           "classes": jnp.asarray([[0, 2], [1, 0]], jnp.int32),
           "box_mask": jnp.asarray([[True, True], [True, False]])}
  cfg = _config(box_loss=box_loss)
  loss, metrics = jax.jit(lambda p, b: retinanet.loss_fn(p, b, config=cfg))(preds, batch)
  cls_ref, box_ref, fg_ref = _np_loss(np.asarray(preds["cls_logits"], np.float64),
                                      np.asarray(preds["box_deltas"], np.float64), anchors,
                                      np.asarray(batch["boxes"]), np.asarray(batch["classes"]),
                                      np.asarray(batch["box_mask"]), box_loss)
  assert int(metrics["num_fg"]) == fg_ref
  np.testing.assert_allclose(metrics["cls_loss"], cls_ref, rtol=1e-4)
  np.testing.assert_allclose(metrics["box_loss"], box_ref, rtol=1e-4)
  np.testing.assert_allclose(loss, cls_ref + box_ref, rtol=1e-4)


@pytest.mark.parametrize("box_loss", ["l1", "smooth_l1", "giou"])
def test_empty_ground_truth_zero_box_loss_finite_grads(eval_preds, box_loss):
  cfg = _config(box_loss=box_loss)
  batch = _batch()
  batch["box_mask"] = jnp.zeros_like(batch["box_mask"])
  preds = eval_preds
  # Gradients w.r.t. the predictions: finite here means finite for every parameter too.
  (loss, metrics), grads = jax.jit(jax.value_and_grad(
      lambda p: retinanet.loss_fn(p, batch, config=cfg), has_aux=True))(preds)
  assert float(metrics["box_loss"]) == 0.0 and float(metrics["num_fg"]) == 0.0
  assert np.isfinite(float(loss)) and float(metrics["cls_loss"]) > 0
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert float(jnp.abs(grads["box_deltas"]).sum()) == 0.0


def test_decode_zero_deltas_gives_clipped_anchors(setup):
  anchors = anchor_ops.retinanet_anchors_xyxy(S)
  preds = {"cls_logits": jnp.zeros((1, anchors.shape[0], C)),
           "box_deltas": jnp.zeros((1, anchors.shape[0], 4)), "anchors": jnp.asarray(anchors)}
  boxes, scores = retinanet.decode(preds, image_size=S)
  np.testing.assert_allclose(boxes[0], np.clip(anchors, 0, S), atol=1e-4)
  np.testing.assert_allclose(scores, 0.5)


def test_frozen_bn_keeps_statistics_and_patterns_select_bn_params(setup):
  _, _, variables, x = setup
  cfg = _config(frozen_bn=True)
  model = models.build(cfg, num_classes=C)
  _, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
      variables, x)
  chex.assert_trees_all_equal(updates["batch_stats"], variables["batch_stats"])
  (pattern,) = models.frozen_param_patterns(cfg)
  paths = ["/".join(k) for k in flax.traverse_util.flatten_dict(variables["params"])]
  frozen = [p for p in paths if re.search(pattern, p)]
  assert frozen and all(p.startswith("backbone/") and "/bn/" in p for p in frozen)
  # one scale+bias per BatchNorm, as many as mean+var statistics
  assert len(frozen) == len(jax.tree.leaves(variables["batch_stats"]))
  assert models.frozen_param_patterns(_config()) == ()
