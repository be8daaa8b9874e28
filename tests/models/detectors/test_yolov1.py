"""`yolov1`: each loss term and decode against plain NumPy, the cell and predictor assignment,
empty ground truth, the backbones' shapes.

Training (the loss falls), jit and ONNX parity: tests/models/test_contract.py.
"""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxdet import models
from jaxdet.models.detectors import yolov1

C = 3
TERMS = ("coord_xy_loss", "coord_wh_loss", "obj_loss", "noobj_loss", "cls_loss")


def _random_preds(rng, *, n=2, grid=4, nb=2, image_hw=(64, 48)):
  """Random raw predictions of the `YOLOv1` layout (linear outputs: any sign)."""
  return {"class_probs": jnp.asarray(rng.normal(0.3, 0.4, (n, grid * grid, C)), jnp.float32),
          "confidence": jnp.asarray(rng.normal(0.3, 0.4, (n, grid * grid, nb)), jnp.float32),
          "boxes": jnp.asarray(rng.uniform(0.05, 0.9, (n, grid * grid, nb, 4)), jnp.float32),
          "image_hw": jnp.asarray(image_hw, jnp.float32)}


def _random_batch(rng, *, n=2, m=6, image_hw=(64, 48)):
  h, w = image_hw
  xy = rng.uniform(0, 1, (n, m, 2)) * [w, h]
  wh = rng.uniform(0.05, 0.6, (n, m, 2)) * [w, h]
  boxes = np.concatenate([xy - wh / 2, xy + wh / 2], -1).clip(0, [w, h, w, h])
  mask = rng.uniform(size=(n, m)) < 0.8
  mask[-1] = False  # an image without ground truth
  return {"boxes": jnp.asarray(boxes, jnp.float32),
          "classes": jnp.asarray(rng.integers(0, C, (n, m)), jnp.int32),
          "box_mask": jnp.asarray(mask)}


def _iou(a, b):
  iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
  return iw * ih / union if union > 0 else 0.0


def _cell_box(raw, row, col, grid):
  """(x, y, sqrt w, sqrt h) of cell (row, col) -> xyxy in image units."""
  cx, cy = (col + raw[0]) / grid, (row + raw[1]) / grid
  w, h = raw[2] ** 2, raw[3] ** 2
  return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def _reference_loss(preds, batch, *, lambda_coord, lambda_noobj, rescore):
  """The paper's equation 3 with loops: per cell the largest truth centred in it, the predictor
  of highest IoU (first on ties) responsible; summed, divided by the batch size."""
  probs, conf, boxes = (np.asarray(preds[k], np.float64)
                        for k in ("class_probs", "confidence", "boxes"))
  h, w = np.asarray(preds["image_hw"])
  gt, cls, mask = (np.asarray(batch[k]) for k in ("boxes", "classes", "box_mask"))
  n, cells, nb, _ = boxes.shape
  grid = int(round(np.sqrt(cells)))
  out = dict.fromkeys(TERMS, 0.0)
  for b in range(n):
    owner = {}
    for m in range(gt.shape[1]):
      if not mask[b, m]:
        continue
      x0, y0, x1, y1 = gt[b, m] / [w, h, w, h]
      col = min(int(np.floor((x0 + x1) / 2 * grid)), grid - 1)
      row = min(int(np.floor((y0 + y1) / 2 * grid)), grid - 1)
      area = (x1 - x0) * (y1 - y0)
      if (row, col) not in owner or area > owner[(row, col)][0]:
        owner[(row, col)] = (area, m)
    for i in range(cells):
      row, col = divmod(i, grid)
      responsible = -1
      if (row, col) in owner:
        m = owner[(row, col)][1]
        x0, y0, x1, y1 = gt[b, m] / [w, h, w, h]
        truth = [x0, y0, x1, y1]
        ious = [_iou(_cell_box(boxes[b, i, j], row, col, grid), truth) for j in range(nb)]
        responsible = int(np.argmax(ious))
        p = boxes[b, i, responsible]
        tx, ty = (x0 + x1) / 2 * grid - col, (y0 + y1) / 2 * grid - row
        tw, th = np.sqrt(x1 - x0), np.sqrt(y1 - y0)
        out["coord_xy_loss"] += lambda_coord * ((p[0] - tx) ** 2 + (p[1] - ty) ** 2)
        out["coord_wh_loss"] += lambda_coord * ((p[2] - tw) ** 2 + (p[3] - th) ** 2)
        target = ious[responsible] if rescore else 1.0
        out["obj_loss"] += (conf[b, i, responsible] - target) ** 2
        out["cls_loss"] += sum((probs[b, i, c] - (c == cls[b, m])) ** 2 for c in range(C))
      for j in range(nb):
        if j != responsible:
          out["noobj_loss"] += lambda_noobj * conf[b, i, j] ** 2
  return {k: v / n for k, v in out.items()}


@pytest.mark.parametrize("seed, rescore", [(0, True), (1, False)])
def test_each_loss_term_matches_numpy(seed, rescore):
  rng = np.random.default_rng(seed)
  preds, batch = _random_preds(rng), _random_batch(rng)
  cfg = ml_collections.ConfigDict(dict(lambda_coord=3.0, lambda_noobj=0.25, rescore=rescore))
  loss, metrics = jax.jit(lambda p, b: yolov1.loss_fn(p, b, config=cfg))(preds, batch)
  want = _reference_loss(preds, batch, lambda_coord=3.0, lambda_noobj=0.25, rescore=rescore)
  for term in TERMS:
    np.testing.assert_allclose(metrics[term], want[term], rtol=1e-5, atol=1e-6, err_msg=term)
  np.testing.assert_allclose(loss, sum(want.values()), rtol=1e-5)
  assert all(want[t] > 0 for t in TERMS)  # non-vacuous: every term is exercised


def _one_object_case():
  """One 64 x 64 image, 2 x 2 grid; one truth centred in cell (row 1, col 0)."""
  grid, nb = 2, 2
  truth = np.asarray([4.0, 36.0, 28.0, 60.0])  # centre (16, 48): cell 2, offsets (0.5, 0.5)
  boxes = np.full((1, grid * grid, nb, 4), 0.5, np.float32)
  boxes[0, 2, 0] = [0.9, 0.1, 0.2, 0.2]  # far and small: IoU 0
  boxes[0, 2, 1] = [0.5, 0.5, np.sqrt(24 / 64), np.sqrt(24 / 64)]  # the truth itself
  preds = {"class_probs": jnp.zeros((1, 4, C)), "confidence": jnp.full((1, 4, nb), 0.5),
           "boxes": jnp.asarray(boxes), "image_hw": jnp.asarray([64.0, 64.0])}
  batch = {"boxes": jnp.asarray(truth[None, None], jnp.float32),
           "classes": jnp.asarray([[1]], jnp.int32), "box_mask": jnp.asarray([[True]])}
  return preds, batch


def test_the_predictor_of_highest_iou_is_responsible():
  preds, batch = _one_object_case()
  loss = jax.jit(lambda p: yolov1.loss_fn(p, batch, config=yolov1.default_config())[1])
  m = loss(preds)
  # Predictor 1 equals the truth: no coordinate error; its confidence 0.5 regresses to IoU 1.
  np.testing.assert_allclose([m["coord_xy_loss"], m["coord_wh_loss"]], [0, 0], atol=1e-10)
  np.testing.assert_allclose(m["obj_loss"], 0.25, rtol=1e-6)
  # The 7 other predictors (predictor 0 of the object cell included) are "no object".
  np.testing.assert_allclose(m["noobj_loss"], 0.5 * 7 * 0.25, rtol=1e-6)
  np.testing.assert_allclose(m["cls_loss"], 1.0)  # class 1 predicted 0
  assert float(m["num_fg"]) == 1
  # Swapping the predictors moves responsibility with the box.
  swapped = dict(preds, boxes=preds["boxes"][:, :, ::-1])
  m2 = loss(swapped)
  np.testing.assert_allclose([m2["coord_xy_loss"], m2["coord_wh_loss"]], [0, 0], atol=1e-10)


def test_several_truths_in_one_cell_the_largest_wins_ties_to_the_lower_index():
  boxes = jnp.asarray([[[0., 0., 10., 10.], [0., 0., 20., 20.], [2., 2., 18., 18.],
                        [40., 40., 60., 60.], [40., 40., 60., 60.], [0., 0., 30., 30.]]])
  mask = jnp.asarray([[True, True, True, True, True, False]])  # the largest is padding
  index, has_obj = jax.jit(lambda b, m: yolov1.assign_cells(b, m, grid_size=2,
                                                             image_size=(64, 64)))(boxes, mask)
  chex.assert_shape([index, has_obj], [(1, 4), (1, 4)])
  np.testing.assert_array_equal(has_obj, [[True, False, False, True]])
  np.testing.assert_array_equal(index[0, [0, 3]], [1, 3])


def test_empty_ground_truth_gives_the_noobj_term_only_with_finite_gradients():
  rng = np.random.default_rng(2)
  preds, batch = _random_preds(rng), _random_batch(rng)
  batch["box_mask"] = jnp.zeros_like(batch["box_mask"])
  cfg = yolov1.default_config()
  (loss, m), grads = jax.jit(jax.value_and_grad(
      lambda p: yolov1.loss_fn(p, batch, config=cfg), has_aux=True))(preds)
  np.testing.assert_allclose(loss, 0.5 * np.sum(np.square(preds["confidence"])) / 2, rtol=1e-5)
  assert all(float(m[t]) == 0 for t in TERMS if t != "noobj_loss")
  chex.assert_tree_all_finite(grads)


def test_decode_matches_numpy():
  rng = np.random.default_rng(3)
  preds = _random_preds(rng, grid=3)
  preds["boxes"] = preds["boxes"].at[0, 0, 0].set(jnp.asarray([0.1, 0.1, 0.9, 0.9]))  # clipped
  h, w = 64, 48
  boxes, scores = jax.jit(lambda p: yolov1.decode(p, image_size=(h, w)))(preds)
  n, cells, nb, _ = preds["boxes"].shape
  chex.assert_shape([boxes, scores], [(n, cells * nb, 4), (n, cells * nb, C)])
  raw = np.asarray(preds["boxes"], np.float64)
  conf = np.clip(np.asarray(preds["confidence"], np.float64), 0, 1)
  probs = np.clip(np.asarray(preds["class_probs"], np.float64), 0, 1)
  for b in range(n):
    for i in range(cells):
      for j in range(nb):
        x0, y0, x1, y1 = _cell_box(raw[b, i, j], *divmod(i, 3), 3)
        want = np.clip([x0 * w, y0 * h, x1 * w, y1 * h], 0, [w, h, w, h])
        np.testing.assert_allclose(boxes[b, i * nb + j], want, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(scores[b, i * nb + j], conf[b, i, j] * probs[b, i],
                                   rtol=1e-5, atol=1e-7)
  assert float(boxes[0, 0, 0]) == 0 and float(boxes[0, 0, 1]) == 0


@pytest.mark.parametrize("backbone, convs", [("yolov1", 24), ("yolov1_fast", 9)])
def test_paper_backbones_have_their_convolutions_and_stride_64(backbone, convs):
  cfg = yolov1.default_config()
  cfg.update(backbone=backbone, width=1 / 16, fc_hidden=16)
  model = models.build(cfg, num_classes=C)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 448, 448, 3)),
                                             train=False))
  assert len(shapes["params"]["backbone"]) == convs
  fc1 = shapes["params"]["fc1"]["kernel"].shape
  last = shapes["params"]["backbone"][f"conv{convs - 1}"]["conv"]["kernel"].shape[-1]
  assert fc1 == (7 * 7 * last, 16)  # 448 / 64 = 7
  assert shapes["params"]["fc2"]["kernel"].shape == (16, 7 * 7 * (C + 5 * 2))


def test_zoo_backbone_features_are_pooled_to_the_grid():
  cfg = yolov1.default_config()
  cfg.update(backbone="resnet18", backbone_width=8, fc_hidden=16, grid_size=5,
             boxes_per_cell=3)
  model = models.build(cfg, num_classes=C)
  x = jnp.zeros((2, 320, 320, 3))  # c5 is 10 x 10
  shapes = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), x, train=False))
  preds, variables = shapes
  assert variables["params"]["fc1"]["kernel"].shape[0] == 5 * 5 * 64
  chex.assert_shape([preds["class_probs"], preds["confidence"], preds["boxes"]],
                    [(2, 25, C), (2, 25, 3), (2, 25, 3, 4)])


def test_conv_head_layout_logistic_outputs_and_dropout():
  """One compile: the conv head puts each cell in the FC layout (bias-only outputs), logistic
  outputs are bounded, dropout acts in training."""
  cfg = yolov1.test_config()
  cfg.update(head="conv", grid_size=4, fc_hidden=8, output_activation="logistic")
  model = models.build(cfg, num_classes=C)
  x = jax.random.normal(jax.random.key(1), (2, 256, 256, 3))  # stride 64: 4 x 4
  run = jax.jit(lambda v, key: model.apply(v, x, train=True, rngs={"dropout": key},
                                           mutable=["batch_stats"])[0])
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  rng = np.random.default_rng(0)
  random = jax.tree.map(lambda a: jnp.asarray(rng.normal(0, 0.3, a.shape), a.dtype), shapes)
  a, b = run(random, jax.random.key(1)), run(random, jax.random.key(2))
  chex.assert_shape([a["class_probs"], a["confidence"], a["boxes"]],
                    [(2, 16, C), (2, 16, 2), (2, 16, 2, 4)])
  assert not np.allclose(a["confidence"], b["confidence"])  # dropout before the prediction
  np.testing.assert_allclose(jnp.sum(a["class_probs"], -1), 1, rtol=1e-5)
  assert 0 < float(a["confidence"].min()) and float(a["confidence"].max()) < 1
  assert 0 < float(a["boxes"].min()) and float(a["boxes"].max()) < 1
  # Zero weights: the 1x1 prediction conv outputs its bias alone, so every cell reads
  # (probs | conf | boxes) from it.
  zeros = jax.tree.map(jnp.zeros_like, random)
  bias = jnp.arange(C + 5 * 2, dtype=jnp.float32) / 10
  zeros["params"]["conv2"]["bias"] = bias
  out = run(zeros, jax.random.key(1))
  np.testing.assert_allclose(out["class_probs"], jnp.broadcast_to(jax.nn.softmax(bias[:C]),
                                                                   (2, 16, C)), rtol=1e-6)
  np.testing.assert_allclose(out["confidence"], jnp.broadcast_to(jax.nn.sigmoid(bias[C:C + 2]),
                                                                  (2, 16, 2)), rtol=1e-6)
  np.testing.assert_allclose(out["boxes"], jnp.broadcast_to(
      jax.nn.sigmoid(bias[C + 2:]).reshape(2, 4), (2, 16, 2, 4)), rtol=1e-6)
  cfg.grid_size = 8  # larger than the 4 x 4 map
  with pytest.raises(ValueError, match="head='conv' needs a feature map of at least the grid"):
    jax.eval_shape(lambda: models.build(cfg, num_classes=C).init(jax.random.key(0), x,
                                                                 train=False))


def test_bad_settings_are_named():
  cfg = yolov1.test_config()
  cfg.output_activation = "tanh"
  model = models.build(cfg, num_classes=C)
  with pytest.raises(ValueError, match="output_activation.*'tanh'"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
  cfg = yolov1.test_config()
  cfg.head = "mlp"
  with pytest.raises(ValueError, match="head must be one of.*'mlp'"):
    jax.eval_shape(lambda: models.build(cfg, num_classes=C).init(
        jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
  cfg = yolov1.test_config()
  cfg.grid_size = 0
  with pytest.raises(ValueError, match="grid_size must be >= 1, got 0"):
    models.build(cfg, num_classes=C)
