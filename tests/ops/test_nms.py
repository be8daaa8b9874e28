"""jaxdet.ops nms / batched_nms / soft_nms against plain-loop NumPy references."""

import functools
import math

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet import ops
from jaxdet.testing import clustered_boxes_xyxy, random_boxes_xyxy


def iou_f32(box, boxes):
  """IoU of `box [4]` with `boxes [M, 4]` in float32, torchvision's NMS kernel formula and order."""
  a = box.astype(np.float32)
  b = np.atleast_2d(boxes).astype(np.float32)
  area_a = (a[2] - a[0]) * (a[3] - a[1])
  area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
  w = np.maximum(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), np.float32(0))
  h = np.maximum(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), np.float32(0))
  inter = w * h
  with np.errstate(invalid="ignore", divide="ignore"):
    return inter / (area_a + area_b - inter)


def ref_nms(boxes, scores, iou_threshold, classes=None, score_threshold=None):
  """Greedy NMS as torchvision: stable descending order, suppress when IoU > thr (in float64)."""
  order = np.argsort(-scores.astype(np.float64), kind="stable")
  suppressed = np.zeros(len(boxes), bool)
  keep = []
  for i in order:
    if suppressed[i] or not scores[i] > -np.inf:
      continue
    if score_threshold is not None and scores[i] < score_threshold:
      continue
    keep.append(i)
    overlap = iou_f32(boxes[i], boxes).astype(np.float64) > iou_threshold  # double, as C++
    if classes is not None:
      overlap &= classes == classes[i]
    suppressed |= overlap
  return np.array(keep, np.int64)


def assert_result(result, expected, max_output_size):
  chex.assert_shape(result.indices, (max_output_size,))
  chex.assert_type(result.indices, jnp.int32)
  chex.assert_type(result.valid, bool)
  chex.assert_shape(result.num_valid, ())
  chex.assert_type(result.num_valid, jnp.int32)
  expected = expected[:max_output_size]
  n = len(expected)
  assert int(result.num_valid) == n
  np.testing.assert_array_equal(result.indices[:n], expected)
  np.testing.assert_array_equal(result.indices[n:], -1)
  np.testing.assert_array_equal(result.valid, np.arange(max_output_size) < n)


@functools.lru_cache(maxsize=None)
def jitted(fn_name, **static):
  fn = getattr(ops, fn_name)
  return jax.jit(lambda *args: fn(*args, **static))


def jnms(boxes, scores, **static):
  return jitted("nms", **static)(boxes, scores)


def jbatched(boxes, scores, classes, **static):
  return jitted("batched_nms", **static)(boxes, scores, classes)


@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("max_output_size", [5, 400])
@pytest.mark.parametrize("layout", ["random", "clustered"])
def test_nms_matches_reference(iou_threshold, max_output_size, layout):
  rng = np.random.default_rng(0)
  make = random_boxes_xyxy if layout == "random" else clustered_boxes_xyxy
  boxes = make(rng, 300)
  scores = rng.uniform(0, 1, 300).astype(np.float32)
  result = jnms(boxes, scores, iou_threshold=iou_threshold, max_output_size=max_output_size,
                block_size=32)
  assert_result(result, ref_nms(boxes, scores, iou_threshold), max_output_size)


@pytest.mark.parametrize("block_size", [1, 5, 64, 1024])
def test_block_size_never_changes_results(block_size):
  rng = np.random.default_rng(1)
  boxes = np.concatenate([clustered_boxes_xyxy(rng, 150), random_boxes_xyxy(rng, 50)])
  scores = rng.uniform(0, 1, 200).astype(np.float32)
  for max_output_size in (3, 12):
    result = jnms(boxes, scores, iou_threshold=0.5, max_output_size=max_output_size,
                  block_size=block_size)
    assert_result(result, ref_nms(boxes, scores, 0.5), max_output_size)
  # Near-duplicates of one box score highest, 5 distinct boxes lowest: the best 4*K candidates
  # keep a single box, so the full-order phase 2 must find the other 5.
  dupes = np.float32([10, 10, 50, 50]) + rng.uniform(-1, 1, (195, 4)).astype(np.float32)
  boxes = np.concatenate([dupes, np.float32([[60, 60, 70, 70]]) + 12 * np.arange(5)[:, None]])
  scores = np.concatenate([rng.uniform(0.5, 1, 195), rng.uniform(0, 0.4, 5)]).astype(np.float32)
  expected = ref_nms(boxes, scores, 0.5)
  assert len(expected) == 6
  assert_result(jnms(boxes, scores, iou_threshold=0.5, max_output_size=6, block_size=block_size),
                expected, 6)
  # Five groups of 20 near-duplicates in descending score bands, 3 outputs: with small blocks each
  # later round walks one group (keeps 1, the kept box then removes the group's rest).
  groups = np.float32([[0, 0, 20, 20]]) + 30 * np.arange(5, dtype=np.float32)[:, None]
  boxes = np.repeat(groups, 20, axis=0) + rng.uniform(-0.5, 0.5, (100, 4)).astype(np.float32)
  scores = (1 - np.repeat(np.arange(5), 20) * 0.1 - rng.uniform(0, 0.09, 100)).astype(np.float32)
  result = jnms(boxes, scores, iou_threshold=0.5, max_output_size=3, block_size=block_size)
  assert_result(result, ref_nms(boxes, scores, 0.5), 3)
  np.testing.assert_array_equal(np.asarray(result.indices) // 20, [0, 1, 2])


def test_nms_boxes_exactly_at_threshold():
  # IoU exactly 0.5 with threshold 0.5: not suppressed (torchvision uses a strict >).
  boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [0, 5, 10, 10], [20, 20, 30, 30]], np.float32)
  scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
  assert_result(jnms(boxes, scores, iou_threshold=0.5, max_output_size=4), np.arange(4), 4)
  assert_result(jnms(boxes, scores, iou_threshold=0.4999, max_output_size=4), np.array([0, 3]), 4)
  # IoU 3/10 is 0.3000000119 in float32, above the double 0.3: suppressed, as in torchvision.
  boxes = np.array([[0, 0, 10, 1], [0, 0, 3, 1]], np.float32)
  scores = np.array([0.9, 0.8], np.float32)
  assert float(iou_f32(boxes[0], boxes[1])[0]) > 0.3
  assert_result(jnms(boxes, scores, iou_threshold=0.3, max_output_size=2), np.array([0]), 2)
  assert_result(jnms(boxes, scores, iou_threshold=0.30000002, max_output_size=2),
                np.array([0, 1]), 2)


def test_nms_traced_threshold():
  rng = np.random.default_rng(8)
  boxes = clustered_boxes_xyxy(rng, 100)
  scores = rng.uniform(0, 1, 100).astype(np.float32)
  fn = jax.jit(lambda b, s, t: ops.nms(b, s, iou_threshold=t, max_output_size=20))
  for thr in (0.25, 0.6):
    assert_result(fn(boxes, scores, np.float32(thr)), ref_nms(boxes, scores, thr), 20)


def test_nms_ties_keep_lower_index_first():
  rng = np.random.default_rng(2)
  boxes = random_boxes_xyxy(rng, 200)
  scores = (rng.integers(0, 4, 200) / 4).astype(np.float32)
  result = jnms(boxes, scores, iou_threshold=0.5, max_output_size=200)
  assert_result(result, ref_nms(boxes, scores, 0.5), 200)


def test_nms_padding_nan_and_score_threshold():
  rng = np.random.default_rng(3)
  boxes = random_boxes_xyxy(rng, 100)
  scores = rng.uniform(0, 1, 100).astype(np.float32)
  expected = ref_nms(boxes, scores, 0.5)
  # -inf padding (even with boxes on top of real ones) and NaN scores are never selected.
  padded_boxes = np.concatenate([boxes, boxes[:30], np.zeros((20, 4), np.float32)])
  padded_scores = np.concatenate([scores, np.full(30, -np.inf, np.float32),
                                  np.full(20, np.nan, np.float32)])
  assert_result(jnms(padded_boxes, padded_scores, iou_threshold=0.5, max_output_size=50),
                expected, 50)
  all_padded = jnms(boxes, np.full(100, -np.inf, np.float32), iou_threshold=0.5,
                    max_output_size=50)
  assert_result(all_padded, np.array([], np.int64), 50)
  result = jnms(boxes, scores, iou_threshold=0.5, max_output_size=50, score_threshold=0.6)
  assert_result(result, ref_nms(boxes, scores, 0.5, score_threshold=0.6), 50)
  assert (scores[np.asarray(result.indices)[:int(result.num_valid)]] >= 0.6).all()


@pytest.mark.parametrize("num_boxes,max_output_size", [(0, 5), (3, 0), (1, 1)])
def test_nms_empty_and_tiny(num_boxes, max_output_size):
  boxes = np.tile(np.float32([[1, 1, 5, 5]]), (num_boxes, 1))
  scores = np.ones(num_boxes, np.float32)
  for result in (ops.nms(boxes, scores, iou_threshold=0.5, max_output_size=max_output_size),
                 ops.batched_nms(boxes, scores, np.zeros(num_boxes, np.int32), iou_threshold=0.5,
                                 max_output_size=max_output_size)):
    assert_result(result, np.arange(min(num_boxes, 1)), max_output_size)


def test_batched_nms_matches_per_class_reference():
  rng = np.random.default_rng(4)
  boxes = np.concatenate([clustered_boxes_xyxy(rng, 200), random_boxes_xyxy(rng, 200)])
  scores = rng.uniform(0, 1, 400).astype(np.float32)
  classes = rng.integers(0, 7, 400).astype(np.int32)
  for max_output_size in (10, 100, 400):
    result = jbatched(boxes, scores, classes, iou_threshold=0.5, max_output_size=max_output_size,
                      block_size=64)
    assert_result(result, ref_nms(boxes, scores, 0.5, classes=classes), max_output_size)
  # One class: same as nms; all different classes: nothing is suppressed.
  single = jbatched(boxes, scores, np.zeros(400, np.int32), iou_threshold=0.5,
                    max_output_size=400, block_size=64)
  assert_result(single, ref_nms(boxes, scores, 0.5), 400)
  distinct = jbatched(boxes, scores, np.arange(400, dtype=np.int32), iou_threshold=0.5,
                      max_output_size=400, block_size=64)
  assert_result(distinct, np.argsort(-scores, kind="stable"), 400)


def test_vmap_over_images_equals_per_image():
  rng = np.random.default_rng(5)
  boxes = clustered_boxes_xyxy(rng, 4 * 120).reshape(4, 120, 4)
  scores = rng.uniform(0, 1, (4, 120)).astype(np.float32)
  scores[2] = -np.inf  # an all-padding image
  scores[3, 60:] = -np.inf
  classes = rng.integers(0, 3, (4, 120)).astype(np.int32)
  fn = jax.jit(jax.vmap(functools.partial(ops.batched_nms, iou_threshold=0.5, max_output_size=30,
                                          block_size=32)))
  result = fn(boxes, scores, classes)
  chex.assert_shape(result.indices, (4, 30))
  for i in range(4):
    assert_result(jax.tree.map(lambda x: x[i], result),
                  ref_nms(boxes[i], scores[i], 0.5, classes=classes[i]), 30)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**32 - 1), num_valid=st.integers(0, 40),
                  iou_threshold=st.sampled_from([0.0, 0.25, 0.5, 0.9]))
def test_property_permutation_invariance_and_padding(seed, num_valid, iou_threshold):
  rng = np.random.default_rng(seed)
  boxes = clustered_boxes_xyxy(rng, 40, num_objects=3)
  scores = rng.permutation(40).astype(np.float32)  # distinct scores: order is well defined
  scores[num_valid:] = -np.inf
  result = jnms(boxes, scores, iou_threshold=iou_threshold, max_output_size=40, block_size=16)
  assert_result(result, ref_nms(boxes, scores, iou_threshold), 40)
  perm = rng.permutation(40)
  permuted = jnms(boxes[perm], scores[perm], iou_threshold=iou_threshold, max_output_size=40,
                  block_size=16)
  n = int(result.num_valid)
  assert int(permuted.num_valid) == n
  np.testing.assert_array_equal(perm[np.asarray(permuted.indices)[:n]], result.indices[:n])


def test_bad_inputs_raise_clear_errors():
  boxes = np.zeros((3, 4), np.float32)
  with pytest.raises(ValueError, match=r"\[N, 4\]"):
    ops.nms(np.zeros((3, 5)), np.zeros(3), iou_threshold=0.5, max_output_size=2)
  with pytest.raises(ValueError, match="scores"):
    ops.nms(boxes, np.zeros(4), iou_threshold=0.5, max_output_size=2)
  with pytest.raises(ValueError, match="max_output_size"):
    ops.nms(boxes, np.zeros(3), iou_threshold=0.5, max_output_size=-1)
  with pytest.raises(ValueError, match="classes"):
    ops.batched_nms(boxes, np.zeros(3), np.zeros(3, np.float32), iou_threshold=0.5,
                    max_output_size=2)
  with pytest.raises(ValueError, match="NaN"):
    ops.nms(boxes, np.zeros(3), iou_threshold=float("nan"), max_output_size=2)
  with pytest.raises(ValueError, match="method"):
    ops.soft_nms(boxes, np.zeros(3), max_output_size=2, method="hard")


# --- soft-NMS (torchvision has none: reference = Bodla et al.'s loop) ---

def ref_soft_nms(boxes, scores, *, method, sigma, iou_threshold, score_threshold, max_output_size):
  """Algorithm 1 of Bodla et al. 2017, with the final score threshold applied as boxes decay."""
  scores = scores.astype(np.float64).copy()
  remaining = [i for i in range(len(boxes)) if scores[i] >= score_threshold]
  picked, picked_scores = [], []
  while remaining and len(picked) < max_output_size:
    best = max(remaining, key=lambda i: (scores[i], -i))  # ties: lower index
    picked.append(best)
    picked_scores.append(scores[best])
    remaining.remove(best)
    for i in list(remaining):
      iou = float(iou_f32(boxes[best], boxes[i])[0])
      if method == "linear":
        scores[i] *= (1 - iou) if iou >= iou_threshold else 1.0
      else:
        scores[i] *= math.exp(-iou * iou / sigma)
      if scores[i] < score_threshold:
        remaining.remove(i)
  return np.array(picked, np.int64), np.array(picked_scores)


@pytest.mark.parametrize("method", ["linear", "gaussian"])
def test_soft_nms_matches_paper_loop(method):
  rng = np.random.default_rng(6)
  boxes = clustered_boxes_xyxy(rng, 60, num_objects=4)
  scores = rng.uniform(0, 1, 60).astype(np.float32)
  params = dict(method=method, sigma=0.5, iou_threshold=0.3, score_threshold=0.05)
  expected, expected_scores = ref_soft_nms(boxes, scores, max_output_size=40, **params)
  result = jax.jit(functools.partial(ops.soft_nms, max_output_size=40, **params))(boxes, scores)
  chex.assert_shape((result.indices, result.scores, result.valid), ((40,), (40,), (40,)))
  assert_result(ops.NmsResult(result.indices, result.valid, result.num_valid), expected, 40)
  n = len(expected)
  np.testing.assert_allclose(result.scores[:n], expected_scores, rtol=1e-5)
  np.testing.assert_array_equal(result.scores[n:], 0)
  # Scores only decay: selected scores never exceed the input ones.
  assert (np.asarray(result.scores[:n]) <= scores[np.asarray(result.indices[:n])] + 1e-7).all()


def test_soft_nms_padding_and_vmap():
  rng = np.random.default_rng(7)
  boxes = clustered_boxes_xyxy(rng, 2 * 30).reshape(2, 30, 4)
  scores = rng.uniform(0.1, 1, (2, 30)).astype(np.float32)
  scores[1, 10:] = -np.inf
  fn = jax.jit(jax.vmap(functools.partial(ops.soft_nms, max_output_size=30, method="gaussian",
                                          score_threshold=0.01)))
  result = fn(boxes, scores)
  for i in range(2):
    expected, _ = ref_soft_nms(boxes[i], scores[i], method="gaussian", sigma=0.5,
                               iou_threshold=0.3, score_threshold=0.01, max_output_size=30)
    np.testing.assert_array_equal(result.indices[i, :len(expected)], expected)
    assert int(result.num_valid[i]) == len(expected)
  assert int(result.num_valid[1]) <= 10
