"""`yolo_anchor_free`: shapes, init, loss vs the assigner + NumPy, empty gt, decode, old name.

Training (the loss falls), jit and ONNX parity: tests/models/test_contract.py.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet import models
from jaxdet.models import assigners
from jaxdet.models.detectors import yolo_anchor_free as yaf
from jaxdet.ops import anchors as anchor_ops

S = 64
C = 3


def _config(**kw):
  cfg = yaf.default_config()
  cfg.update(width=0.125, depth=0.33, head_width=16, **kw)
  return cfg


@pytest.fixture(scope="module")
def setup():
  cfg = _config()
  model = models.build(cfg, num_classes=C)
  x = jax.random.normal(jax.random.key(1), (2, S, S, 3))
  variables = jax.jit(lambda x: model.init(jax.random.key(0, impl="rbg"), x, train=False))(x)
  preds = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  return cfg, model, variables, x, preds


def _batch():
  return {"boxes": jnp.asarray([[[4., 6., 30., 40.], [30., 20., 60., 50.], [0., 0., 0., 0.]],
                                [[10., 10., 50., 30.], [0., 0., 0., 0.], [0., 0., 0., 0.]]]),
          "classes": jnp.asarray([[1, 2, 0], [0, 0, 0]], jnp.int32),
          "box_mask": jnp.asarray([[True, True, False], [True, False, False]])}


def test_output_shapes_points_and_prior(setup):
  _, _, variables, _, preds = setup
  points, strides = anchor_ops.grid_points(S, (8, 16, 32))
  A = points.shape[0]
  assert A == 8 * 8 + 4 * 4 + 2 * 2
  chex.assert_shape([preds["cls_logits"], preds["box_ltrb"], preds["points"], preds["strides"]],
                    [(2, A, C), (2, A, 4), (A, 2), (A,)])
  chex.assert_type([preds["cls_logits"], preds["box_ltrb"]], [jnp.float32, jnp.float32])
  np.testing.assert_array_equal(preds["points"], points)
  np.testing.assert_array_equal(preds["strides"], strides)
  assert float(preds["box_ltrb"].min()) > 0  # distances are positive
  for level in ("p3", "p4", "p5"):
    bias = variables["params"][f"head_{level}"]["cls"]["bias"]
    np.testing.assert_allclose(jax.nn.sigmoid(bias), 0.01, rtol=1e-5)


def test_decode_is_points_plus_minus_distances(setup):
  _, _, _, _, preds = setup
  boxes, scores = yaf.decode(preds, image_size=S)
  p, d = np.asarray(preds["points"]), np.asarray(preds["box_ltrb"])
  want = np.clip(np.concatenate([p - d[..., :2], p + d[..., 2:]], -1), 0, S)
  np.testing.assert_allclose(boxes, want, rtol=1e-6, atol=1e-5)
  np.testing.assert_allclose(scores, 1 / (1 + np.exp(-np.asarray(preds["cls_logits"]))),
                             rtol=1e-5)


def test_loss_matches_numpy_given_assignment(setup):
  cfg, _, _, _, preds = setup
  batch = _batch()
  loss, metrics = jax.jit(lambda p, b: yaf.loss_fn(p, b, config=cfg))(preds, batch)
  # Reference: the (separately tested) assigner, then BCE + CIoU written in NumPy.
  logits = np.asarray(preds["cls_logits"], np.float64)
  p, d = np.asarray(preds["points"]), np.asarray(preds["box_ltrb"], np.float64)
  pred_boxes = np.concatenate([p - d[..., :2], p + d[..., 2:]], -1)
  prob = 1 / (1 + np.exp(-logits))
  cls_sum = box_sum = norm = 0.0
  for b in range(2):
    t = assigners.task_aligned_assign(prob[b].astype(np.float32), pred_boxes[b].astype(np.float32),
                                      p, batch["boxes"][b], batch["classes"][b],
                                      batch["box_mask"][b])
    ts = np.asarray(t.target_scores, np.float64)
    norm += ts.sum()
    cls_sum += -(ts * np.log(prob[b]) + (1 - ts) * np.log(1 - prob[b])).sum()
    for a in np.nonzero(np.asarray(t.fg_mask))[0]:
      pb, gb = pred_boxes[b, a], np.asarray(t.target_boxes_xyxy[a], np.float64)
      lt, rb = np.maximum(pb[:2], gb[:2]), np.minimum(pb[2:], gb[2:])
      inter = np.prod(np.clip(rb - lt, 0, None))
      wp, hp, wg, hg = pb[2] - pb[0], pb[3] - pb[1], gb[2] - gb[0], gb[3] - gb[1]
      iou = inter / (wp * hp + wg * hg - inter + 1e-7)
      cw = max(pb[2], gb[2]) - min(pb[0], gb[0]); ch = max(pb[3], gb[3]) - min(pb[1], gb[1])
      rho2 = ((pb[0] + pb[2] - gb[0] - gb[2])**2 + (pb[1] + pb[3] - gb[1] - gb[3])**2) / 4
      v = 4 / np.pi**2 * (np.arctan(wg / hg) - np.arctan(wp / hp))**2
      alpha = v / (1 - iou + v + 1e-7)
      box_sum += ts[a].sum() * (1 - iou + rho2 / (cw**2 + ch**2 + 1e-7) + alpha * v)
  n = max(norm, 1.0)
  assert float(metrics["num_fg"]) > 0
  np.testing.assert_allclose(metrics["cls_loss"], cls_sum / n, rtol=2e-4)
  np.testing.assert_allclose(metrics["box_loss"], box_sum / n, rtol=2e-4)
  np.testing.assert_allclose(loss, cls_sum / n + 5.0 * box_sum / n, rtol=2e-4)


@pytest.mark.parametrize("cls_loss,box_loss", [("bce", "ciou"), ("varifocal", "giou"),
                                               ("focal", "diou")])
def test_empty_ground_truth_zero_box_loss_finite_grads(setup, cls_loss, box_loss):
  _, _, _, _, preds = setup
  cfg = _config(cls_loss=cls_loss, box_loss=box_loss)
  batch = _batch()
  batch["box_mask"] = jnp.zeros_like(batch["box_mask"])
  (loss, metrics), grads = jax.jit(jax.value_and_grad(
      lambda p: yaf.loss_fn(p, batch, config=cfg), has_aux=True))(preds)
  assert float(metrics["box_loss"]) == 0.0 and float(metrics["num_fg"]) == 0.0
  assert np.isfinite(float(loss)) and float(metrics["cls_loss"]) > 0
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert float(jnp.abs(grads["box_ltrb"]).sum()) == 0.0


def test_bad_config_and_input_are_clear_errors(setup):
  cfg, model, variables, _, preds = setup
  with pytest.raises(ValueError, match="cls_loss"):
    yaf.loss_fn(preds, _batch(), config=_config(cls_loss="nope"))
  with pytest.raises(ValueError, match="strides"):
    models.build(_config(strides=(8, 16)), num_classes=C)
  with pytest.raises(ValueError, match="images"):
    model.apply(variables, jnp.zeros((2, S, S)), train=False)
  with pytest.raises(ValueError, match="num_classes"):
    models.build(cfg, num_classes=0)


def test_old_name_yolo_still_loads_configs_and_checkpoints(setup, tmp_path):
  """Configs and checkpoints written as "yolo" (before the rename) load as yolo_anchor_free."""
  import jaxdet
  from jaxdet.train import checkpoint
  from jaxdet.train import config as config_lib
  cfg, _, variables, x, preds = setup
  assert models.get_detector("yolo") is yaf and models.default_config("yolo").name == yaf.name
  config = config_lib.base_config()
  config.image_size = S
  config.model = _config()
  config.model.name = "yolo"
  text = config_lib.to_json(config)
  assert '"name": "yolo"' in text
  assert config_lib.from_json(text).model.name == "yolo_anchor_free"
  meta = {"class_names": ["a", "b", "c"], "config": text}
  checkpoint.save_best(checkpoint.best_manager(tmp_path), step=1, model_variables=variables,
                       meta=meta, ap=0.5)
  detector = jaxdet.load(tmp_path)
  assert detector.config.model.name == "yolo_anchor_free"
  chex.assert_trees_all_equal(jax.device_get(detector.variables), jax.device_get(variables))
  # The loaded variables fit the model (shapes only: tracing, no compile).
  boxes, scores = jax.eval_shape(detector.forward, np.zeros((2, S, S, 3), np.uint8))
  chex.assert_shape([boxes, scores], [preds["box_ltrb"].shape, preds["cls_logits"].shape])
