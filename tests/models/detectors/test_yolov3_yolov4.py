"""The darknet-cfg YOLO families (`yolov3`, `yolov4`): decode, target assignment and loss terms,
stated against hand-computed values on the tiny test cfgs (no network is run)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet.models import darknet
from jaxdet.models import darknet_cfg as dc
from jaxdet.models.detectors import yolov3, yolov4

S, C = 64, 3


def _preds(config, raw=None, batch=1):
  """Prediction dict of the config's cfg at S with `raw` (default zeros) as the network output."""
  p = darknet.plan_of(config, num_classes=C, image_size=S)
  heads = [(p.layers[i], jnp.zeros((batch, p.shapes[i][0], p.shapes[i][1], p.shapes[i][2])))
           for i in p.yolo_indices]
  preds = darknet._head_outputs(heads, (S, S))
  if raw is not None:
    preds["raw"] = jnp.asarray(raw, jnp.float32)
  return preds


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def test_decode_formula_with_scale_x_y():
  cfg = yolov4.test_config()
  preds = _preds(cfg)
  a = preds["raw"].shape[1]
  raw = np.random.default_rng(0).normal(0, 1, (1, a, 5 + C)).astype(np.float32)
  boxes, scores = jax.jit(lambda r: darknet.decode({**preds, "raw": r}, image_size=S))(raw)
  # Anchor 7 of A: first layer (4 x 4 grid at stride 16, scale_x_y 1.05), cell (row 0, col 2),
  # mask slot 1 -> anchor (40, 44).
  j = 7
  t = raw[0, j]
  s = 1.05
  cx = (2 + _sigmoid(t[0]) * s - 0.5 * (s - 1)) * 16
  cy = (0 + _sigmoid(t[1]) * s - 0.5 * (s - 1)) * 16
  w, h = np.exp(t[2]) * 40, np.exp(t[3]) * 44
  want = np.clip([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 0, S)
  np.testing.assert_allclose(boxes[0, j], want, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(scores[0, j], _sigmoid(t[4]) * _sigmoid(t[5:]), rtol=1e-5)


def _assign(config, boxes, classes, multi_anchor):
  preds = _preds(config)
  a = preds["raw"].shape[1]
  lv = darknet._levels(config, num_classes=C, num_anchors=a)
  boxes = jnp.asarray(boxes, jnp.float32)
  assign = jax.jit(lambda b, c: darknet._assign(lv, b, c, jnp.ones(len(boxes), bool),
                                                 num_anchors=a, multi_anchor=multi_anchor))
  out = assign(boxes, jnp.asarray(classes, jnp.int32))
  return lv, {k: np.asarray(v) for k, v in out.items()}


def test_v3_assigns_each_box_to_its_best_anchor_cell():
  # Anchors (pixels): layer 0 (stride 16, 4x4) masks 3,4,5 = (30,24) (40,44) (60,56); layer 1
  # (stride 8, 8x8) masks 0,1,2 = (6,8) (12,14) (16,30). A box of 12 x 14 centred at (40, 24)
  # belongs to layer 1, slot 1, cell (row 3, col 5): index 48 + (3 * 8 + 5) * 3 + 1 = 136.
  lv, t = _assign(yolov3.test_config(), [[34, 17, 46, 31], [0, 0, 60, 56]], [2, 1], False)
  assert lv.offsets == (0, 48) and lv.sizes == (4, 8)
  # Second box: 60 x 56 centred at (30, 28): layer 0, slot 2, cell (1, 1) -> index 17.
  assert sorted(np.nonzero(t["pos"])[0].tolist()) == [17, 136]
  assert t["cls"][136] == 2 and t["cls"][17] == 1
  np.testing.assert_array_equal(t["box"][136], [34, 17, 46, 31])


def test_v4_also_assigns_anchors_above_iou_thresh():
  # 30 x 24: IoU 1 with (30,24), above 0.213 also with (16,30) 0.47, (40,44) 0.41, (12,14)
  # 0.233 and (60,56) 0.214; (6,8) 0.067 stays negative.
  config = yolov4.test_config()
  _, single = _assign(config, [[20, 20, 50, 44]], [0], False)
  _, multi = _assign(config, [[20, 20, 50, 44]], [0], True)
  assert single["pos"].sum() == 1 and multi["pos"].sum() == 5
  assert multi["pos"][single["pos"]].all()


def test_loss_ignores_negatives_that_overlap_a_ground_truth():
  config = yolov3.test_config()
  preds = _preds(config)
  a = preds["raw"].shape[1]
  batch = {"boxes": jnp.asarray([[[34., 17., 46., 31.]]]), "classes": jnp.asarray([[2]]),
           "box_mask": jnp.asarray([[True]])}
  # Anchor 135 (slot 0 of the positive's cell) predicts, with zero outputs, a 6 x 8 box at the
  # cell centre (44, 28): IoU with the 12 x 14 ground truth < 0.7, so it is a negative; making
  # its decoded box the ground truth's (offsets to the cell corner (40, 24), tw, th = log 2,
  # log 1.75) puts it above 0.7: ignored.
  base = np.zeros((1, a, 5 + C), np.float32)
  moved = base.copy()
  moved[0, 135, 0:4] = [-30, -30, np.log(2.0), np.log(1.75)]
  loss = jax.jit(lambda raw: darknet.loss_fn({**preds, "raw": raw}, batch,
                                              config=config)[1]["obj_loss"])
  bce0 = np.log(2.0)  # BCE of a zero logit against 0 or 1
  np.testing.assert_allclose(loss(base), a * bce0, rtol=1e-5)  # num_pos = 1
  np.testing.assert_allclose(loss(moved), (a - 1) * bce0, rtol=1e-5)


def test_label_smoothing_and_empty_ground_truth():
  config = yolov4.test_config()
  config.label_smoothing = 0.1
  preds = _preds(config)
  a = preds["raw"].shape[1]
  empty = {"boxes": jnp.zeros((1, 2, 4)), "classes": jnp.zeros((1, 2), jnp.int32),
           "box_mask": jnp.zeros((1, 2), bool)}
  # One compile for both batches: the loss, its metrics and the gradient wrt the raw outputs.
  loss_fn = jax.jit(jax.value_and_grad(
      lambda r, b: darknet.loss_fn({**preds, "raw": r}, b, config=config), has_aux=True))
  (_, metrics), _ = loss_fn(preds["raw"], empty)
  assert float(metrics["num_pos"]) == 0 and float(metrics["cls_loss"]) == 0
  np.testing.assert_allclose(float(metrics["obj_loss"]), a * np.log(2), rtol=1e-5)
  one = {"boxes": jnp.asarray([[[34., 17., 46., 31.], [0., 0., 0., 0.]]]),
         "classes": jnp.asarray([[2, 0]]), "box_mask": jnp.asarray([[True, False]])}
  (_, m), grads = loss_fn(preds["raw"], one)
  n = float(m["num_pos"])
  # Zero logits: BCE against 0.95 or 0.05 is log 2 either way; C classes per positive.
  np.testing.assert_allclose(float(m["cls_loss"]), C * np.log(2), rtol=1e-5)
  g = np.asarray(grads)[0, :, 5:][np.asarray(grads)[0, :, 5:].any(-1)]
  # d BCE / d logit = sigmoid(0) - target: 0.5 - 0.95 for the class, 0.5 - 0.05 for the others.
  np.testing.assert_allclose(g[0] * n / config.cls_weight, [0.45, 0.45, -0.45], rtol=1e-5)


def test_config_options_anchors_and_width():
  config = yolov3.default_config()
  config.cfg = "yolov3-tiny"
  config.width = 0.5
  config.anchors = "1,2, 3,4, 5,6, 7,8, 9,10, 11,12"
  p = darknet.plan_of(config, num_classes=C)
  assert p.layers[0].filters == 8  # 16 halved
  assert p.layers[p.yolo_indices[0] - 1].filters == 3 * (C + 5)  # the head keeps its filters
  assert p.layers[p.yolo_indices[0]].anchors == ((7, 8), (9, 10), (11, 12))
  config.anchors = "1,2"
  with pytest.raises(dc.CfgError, match="has 6 anchors"):
    darknet.plan_of(config)
  config.anchors, config.cfg = "", "yolov9"
  with pytest.raises(dc.CfgError, match="unknown darknet cfg 'yolov9'"):
    darknet.plan_of(config)
