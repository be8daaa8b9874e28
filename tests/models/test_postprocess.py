"""`jaxdet.models.postprocess` against a NumPy reference (and torchvision's RetinaNet rule)."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxdet import models
from jaxdet.models.postprocess import clip_and_score
from jaxdet.models.postprocess import clip_boxes
from jaxdet.models.postprocess import objectness_scores
from jaxdet.models.postprocess import postprocess_args
from jaxdet.models.postprocess import postprocess_settings
from jaxdet.models.postprocess import POSTPROCESS_DEFAULTS
from jaxdet.models.postprocess import softmax_scores
from models_testlib import postprocess_reference
from models_testlib import random_detections


def _check(out, want):
  np.testing.assert_array_equal(out["num_detections"], want["num_detections"])
  np.testing.assert_array_equal(out["classes"], want["classes"])
  np.testing.assert_allclose(out["boxes"], want["boxes"], rtol=0, atol=0)
  np.testing.assert_allclose(out["scores"], want["scores"], rtol=0, atol=0)


@pytest.mark.parametrize("seed,top_k,max_det", [(0, 50, 10), (1, 1000, 20), (2, 7, 12)])
def test_postprocess_matches_numpy(seed, top_k, max_det):
  rng = np.random.default_rng(seed)
  B, A, C = 2, 40, 3
  boxes, scores = random_detections(rng, n=B, a=A, c=C)
  kw = dict(score_threshold=0.3, iou_threshold=0.5, max_detections=max_det, pre_nms_top_k=top_k)
  out = models.postprocess(boxes, scores, **kw)
  chex.assert_shape([out["boxes"], out["scores"], out["classes"]], [(B, max_det, 4), (B, max_det),
                                                                   (B, max_det)])
  chex.assert_type([out["classes"], out["num_detections"]], [np.int32, np.int32])
  _check(out, postprocess_reference(boxes, scores, **kw))


@pytest.mark.parametrize("class_specific", [False, True], ids=["agnostic", "specific"])
@pytest.mark.parametrize("per_level", [False, True], ids=["global", "per_level"])
@pytest.mark.parametrize("seed", range(4))
def test_layouts_and_per_level_match_numpy(class_specific, per_level, seed):
  rng = np.random.default_rng(100 + seed)
  levels = (48, 12, 3)  # e.g. strides 8/16/32 of a small input
  boxes, scores = random_detections(rng, n=3, a=sum(levels), c=4, class_specific=class_specific,
                                    quantize=seed % 2 == 1)  # odd seeds: many exact ties
  kw = dict(score_threshold=0.2, iou_threshold=0.45, max_detections=30, pre_nms_top_k=20,
            pre_nms_top_k_per_level=per_level, level_sizes=levels if per_level else None)
  out = models.postprocess(boxes, scores, **kw)
  want = postprocess_reference(boxes, scores, **kw)
  assert want["num_detections"].min() >= 5  # non-vacuous
  _check(out, want)


def test_class_specific_takes_the_box_of_the_class():
  # One anchor, two classes with disjoint boxes: both survive, each with its own box.
  boxes = np.array([[[[0, 0, 10, 10], [20, 20, 30, 30]]]], np.float32)  # [1, 1, 2, 4]
  scores = np.array([[[0.6, 0.9]]], np.float32)
  out = models.postprocess(boxes, scores, score_threshold=0.1, iou_threshold=0.5,
                           max_detections=3, pre_nms_top_k=10)
  assert out["num_detections"].tolist() == [2]
  np.testing.assert_array_equal(out["classes"][0, :2], [1, 0])
  np.testing.assert_array_equal(out["boxes"][0, :2], boxes[0, 0, ::-1])


def test_per_level_keeps_candidates_that_a_global_top_k_drops():
  # Level 0 holds the 4 best scores; a global top-2 never sees level 1, per level it does.
  boxes = np.tile(np.arange(6, dtype=np.float32)[:, None] * 20 + np.float32([0, 0, 10, 10]),
                  (1, 1, 1))
  scores = np.float32([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])[None, :, None]
  kw = dict(score_threshold=0.1, iou_threshold=0.5, max_detections=6, pre_nms_top_k=2)
  glob = models.postprocess(boxes, scores, **kw)
  per = models.postprocess(boxes, scores, pre_nms_top_k_per_level=True, level_sizes=[4, 2], **kw)
  np.testing.assert_allclose(glob["scores"][0, :2], [0.9, 0.8])
  assert int(glob["num_detections"][0]) == 2
  np.testing.assert_allclose(per["scores"][0, :4], [0.9, 0.8, 0.5, 0.4])


def _torchvision_retinanet_rule(boxes, scores, level_sizes, *, score_thresh, nms_thresh,
                                detections_per_img, topk_candidates, image_size):
  """torchvision's RetinaNet.postprocess_detections on probabilities instead of logits."""
  torch = pytest.importorskip("torch")
  from torchvision.ops import boxes as box_ops
  out = []
  for b in range(scores.shape[0]):
    all_boxes, all_scores, all_labels, start = [], [], [], 0
    for size in level_sizes:
      s = torch.from_numpy(scores[b, start:start + size]).flatten()
      keep = s > score_thresh
      s, idx = s[keep], torch.where(keep)[0]
      s, top = s.topk(min(topk_candidates, idx.numel()))
      idx = idx[top]
      anchors = torch.div(idx, scores.shape[2], rounding_mode="floor") + start
      all_boxes.append(box_ops.clip_boxes_to_image(torch.from_numpy(boxes[b])[anchors],
                                                   (image_size, image_size)))
      all_scores.append(s)
      all_labels.append(idx % scores.shape[2])
      start += size
    bx, sc, lb = torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)
    # jaxdet's one difference: a box of zero area (here: clipped away onto an edge) is no
    # detection. It suppresses nothing (IoU 0), so dropping it first changes nothing else.
    nonempty = (bx[:, 2] > bx[:, 0]) & (bx[:, 3] > bx[:, 1])
    bx, sc, lb = bx[nonempty], sc[nonempty], lb[nonempty]
    keep = box_ops.batched_nms(bx, sc, lb, nms_thresh)[:detections_per_img]
    out.append((bx[keep].numpy(), sc[keep].numpy(), lb[keep].numpy()))
  return out


@pytest.mark.torch
@pytest.mark.parametrize("seed", range(2))
def test_per_level_equals_torchvision_retinanet_postprocess(seed):
  pytest.importorskip("torchvision")
  rng = np.random.default_rng(seed)
  size, levels, c = 64, (1200, 300, 75), 3  # level 0 has more than 1000 candidates
  a = sum(levels)
  xy = rng.uniform(-8, size, (2, a, 2))
  boxes = np.concatenate([xy, xy + rng.uniform(2, 30, (2, a, 2))], -1).astype(np.float32)
  # Distinct scores: torch's order of tied scores (topk, the vanilla batched_nms) is unspecified.
  scores = ((rng.permutation(2 * a * c) + 0.5) / (2 * a * c)).astype(np.float32).reshape(2, a, c)
  assert len(np.unique(scores)) == scores.size
  want = _torchvision_retinanet_rule(boxes, scores, levels, score_thresh=0.05, nms_thresh=0.5,
                                     detections_per_img=300, topk_candidates=1000,
                                     image_size=size)
  clipped = clip_boxes(jnp.asarray(boxes), image_size=size)  # what `decode` hands over
  out = models.postprocess(clipped, scores, score_threshold=0.05, iou_threshold=0.5,
                           max_detections=300, pre_nms_top_k=1000, pre_nms_top_k_per_level=True,
                           level_sizes=levels)
  for b, (w_boxes, w_scores, w_labels) in enumerate(want):
    n = int(out["num_detections"][b])
    assert n == len(w_scores) and n >= 100
    np.testing.assert_array_equal(out["classes"][b, :n], w_labels)
    np.testing.assert_array_equal(out["scores"][b, :n], w_scores)
    np.testing.assert_allclose(out["boxes"][b, :n], w_boxes, rtol=0, atol=1e-6)


def test_postprocess_all_below_threshold_is_empty():
  boxes = np.tile(np.asarray([[0, 0, 10, 10]], np.float32), (1, 5, 1))
  out = models.postprocess(boxes, np.full((1, 5, 2), 0.01, np.float32), score_threshold=0.5,
                           iou_threshold=0.5, max_detections=4, pre_nms_top_k=10)
  assert int(out["num_detections"][0]) == 0
  assert float(np.abs(out["boxes"]).sum()) == 0.0


def test_postprocess_rejects_bad_shapes():
  kw = dict(score_threshold=0.1, iou_threshold=0.5, max_detections=3, pre_nms_top_k=5)
  with pytest.raises(ValueError, match="boxes_xyxy"):
    models.postprocess(np.zeros((1, 5, 4), np.float32), np.zeros((1, 6, 2), np.float32), **kw)
  with pytest.raises(ValueError, match="scores"):
    models.postprocess(np.zeros((5, 4), np.float32), np.zeros((5, 2), np.float32), **kw)
  with pytest.raises(ValueError, match="boxes_xyxy"):
    models.postprocess(np.zeros((1, 5, 3, 4), np.float32), np.zeros((1, 5, 2), np.float32), **kw)
  with pytest.raises(ValueError, match="level_sizes"):
    models.postprocess(np.zeros((1, 5, 4), np.float32), np.zeros((1, 5, 2), np.float32),
                       pre_nms_top_k_per_level=True, level_sizes=(3, 3), **kw)
  with pytest.raises(ValueError, match="level_sizes"):
    models.postprocess(np.zeros((1, 5, 4), np.float32), np.zeros((1, 5, 2), np.float32),
                       pre_nms_top_k_per_level=True, **kw)


def test_settings_defaults_for_old_configs_and_unknown_keys():
  old = ml_collections.ConfigDict(dict(score_threshold=0.2, iou_threshold=0.6, max_detections=7,
                                       pre_nms_top_k=50))
  assert postprocess_settings(old) == dict(score_threshold=0.2, iou_threshold=0.6,
                                              max_detections=7, pre_nms_top_k=50,
                                              pre_nms_top_k_per_level=False,
                                              pre_nms_top_k_per_class=False)
  assert postprocess_settings(None) == POSTPROCESS_DEFAULTS
  with pytest.raises(ValueError, match="pre_nms_topk"):
    postprocess_settings({"pre_nms_topk": 3})


def test_postprocess_args_asks_the_family_for_level_sizes(monkeypatch):
  from jaxdet.models import retinanet
  config = ml_collections.ConfigDict({"name": "retinanet"})
  settings = dict(POSTPROCESS_DEFAULTS, pre_nms_top_k_per_level=True)
  # A family without `level_sizes` cannot use the per-level option: a clear error.
  with pytest.raises(ValueError, match="yolo_anchor_free.*level_sizes"):
    postprocess_args(settings, model_config=ml_collections.ConfigDict(
        {"name": "yolo_anchor_free"}), image_size=64)
  monkeypatch.setattr(retinanet, "level_sizes", lambda cfg, s: [s * 9, s], raising=False)
  args = postprocess_args(settings, model_config=config, image_size=64)
  assert args["level_sizes"] == (576, 64)
  assert "level_sizes" not in postprocess_args(dict(settings, pre_nms_top_k_per_level=False),
                                                  model_config=config, image_size=64)


def test_score_helpers():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(2, 5, 4)), jnp.float32)
  probs = jax.nn.softmax(logits, axis=-1)
  np.testing.assert_allclose(softmax_scores(logits), probs[..., 1:], rtol=1e-6)
  np.testing.assert_allclose(softmax_scores(logits, background_index=-1), probs[..., :3],
                             rtol=1e-6)
  obj = jnp.asarray(rng.normal(size=(2, 5)), jnp.float32)
  np.testing.assert_allclose(objectness_scores(obj, logits),
                             jax.nn.sigmoid(obj)[..., None] * jax.nn.sigmoid(logits), rtol=1e-6)
  np.testing.assert_allclose(objectness_scores(obj[..., None], logits,
                                                  class_activation="softmax"),
                             jax.nn.sigmoid(obj)[..., None] * probs, rtol=1e-6)
  boxes, scores = clip_and_score(jnp.full((1, 5, 4, 4), 70.0), logits[:1], image_size=(32, 64))
  chex.assert_shape(boxes, (1, 5, 4, 4))
  np.testing.assert_array_equal(boxes[0, 0, 0], [64, 32, 64, 32])
  np.testing.assert_allclose(scores, jax.nn.sigmoid(logits[:1]), rtol=1e-6)


def test_zero_area_boxes_are_no_detections():
  """A box clipped away onto an edge (zero width or height) is dropped even with score 1.0
  (issue 28: such boxes were kept); the others are those of the NumPy reference."""
  boxes = np.array([[[10, 10, 30, 30], [64, 5, 64, 40], [5, 64, 20, 64], [0, 0, 0, 0],
                     [12, 12, 28, 28]]], np.float32)
  scores = np.array([[[0.6], [1.0], [1.0], [0.9], [0.7]]], np.float32)
  kw = dict(score_threshold=0.05, iou_threshold=0.5, max_detections=5, pre_nms_top_k=10)
  out = models.postprocess(jnp.asarray(boxes), jnp.asarray(scores), **kw)
  assert int(out["num_detections"][0]) == 1
  np.testing.assert_allclose(out["scores"][0, :1], [0.7])
  ref = postprocess_reference(boxes, scores, **kw)
  np.testing.assert_array_equal(out["num_detections"], ref["num_detections"])
  np.testing.assert_allclose(out["boxes"], ref["boxes"])
