"""Matching and sampling: loop references, threshold edge cases, torchvision conformance."""

import chex
from hypothesis import given, settings, strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet.ops import matching
from jaxdet.ops.matching import MatchCode


def _loop_matcher(iou, gt_mask, high, low, allow_low):
  """Plain-loop torchvision Matcher on the unpadded rows (all-masked -> all negative)."""
  num_gt, num_anchors = iou.shape
  rows = [g for g in range(num_gt) if gt_mask[g]]
  out = np.full(num_anchors, -1, np.int32)
  if not rows:
    return out
  best = np.zeros(num_anchors, np.int32)
  for a in range(num_anchors):
    b = rows[0]
    for g in rows:
      if iou[g, a] > iou[b, a]:
        b = g
    best[a] = b
    v = iou[b, a]
    out[a] = b if v >= high else (-2 if v >= low else -1)
  if allow_low:
    for g in rows:
      top = max(iou[g, a] for a in range(num_anchors))
      for a in range(num_anchors):
        if iou[g, a] == top:
          out[a] = best[a]
  return out


def _quantized_iou(rng, m, a):
  # Few distinct values: many ties and values exactly at the thresholds.
  return rng.choice(np.float32([0.0, 0.1, 0.3, 0.4, 0.45, 0.5, 0.6, 0.7, 0.9]), (m, a))


@pytest.mark.parametrize("allow_low", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_iou_matcher_matches_loop(seed, allow_low):
  rng = np.random.default_rng(seed)
  iou = _quantized_iou(rng, 7, 60)
  gt_mask = rng.random(7) < 0.7
  got = matching.iou_matcher(iou, gt_mask, high_threshold=0.5, low_threshold=0.4,
                             allow_low_quality_matches=allow_low)
  chex.assert_shape(got, (60,))
  chex.assert_type(got, jnp.int32)
  np.testing.assert_array_equal(got, _loop_matcher(iou, gt_mask, 0.5, 0.4, allow_low))


def test_thresholds_are_inclusive_at_exact_values():
  iou = np.float32([[0.5, 0.4, 0.39999, 0.49999]])
  got = matching.iou_matcher(iou, np.array([True]), high_threshold=0.5, low_threshold=0.4)
  np.testing.assert_array_equal(got, [0, MatchCode.IGNORE, MatchCode.NEGATIVE, MatchCode.IGNORE])


def test_padded_gt_never_matched_and_all_masked_negative():
  iou = np.float32([[0.2, 0.3], [0.9, 0.95]])
  got = matching.iou_matcher(iou, np.array([True, False]), high_threshold=0.5, low_threshold=0.4,
                             allow_low_quality_matches=True)
  np.testing.assert_array_equal(got, [MatchCode.NEGATIVE, 0])  # anchor 1 is gt 0's best
  none = matching.iou_matcher(iou, np.array([False, False]), high_threshold=0.5,
                              low_threshold=0.4, allow_low_quality_matches=True)
  np.testing.assert_array_equal(none, [MatchCode.NEGATIVE] * 2)


def test_zero_gt_slots_all_negative():
  got = matching.match_boxes(np.zeros((2, 0, 4), np.float32), np.zeros((2, 0), bool),
                             np.array([[0, 0, 4, 4], [1, 1, 9, 9]], np.float32),
                             high_threshold=0.5, low_threshold=0.4, allow_low_quality_matches=True)
  np.testing.assert_array_equal(got, np.full((2, 2), MatchCode.NEGATIVE))


def test_nan_quality_is_not_a_match():
  iou = np.float32([[np.nan, 0.8]])
  got = matching.iou_matcher(iou, np.array([True]), high_threshold=0.5, low_threshold=0.4)
  np.testing.assert_array_equal(got, [MatchCode.NEGATIVE, 0])


def test_bad_thresholds_and_shapes_raise():
  with pytest.raises(ValueError, match="low_threshold"):
    matching.iou_matcher(np.zeros((2, 3)), np.ones(2, bool), high_threshold=0.4, low_threshold=0.5)
  with pytest.raises(ValueError, match=r"\[..., M, A\]"):
    matching.iou_matcher(np.zeros((2, 3)), np.ones(3, bool), high_threshold=0.5, low_threshold=0.4)


def test_batched_jit_vmap_and_match_boxes():
  rng = np.random.default_rng(5)
  xy = rng.uniform(0, 60, (3, 6, 2))
  gt = np.concatenate([xy, xy + rng.uniform(4, 40, (3, 6, 2))], -1).astype(np.float32)
  gt_mask = np.array([[1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0] * 6], bool)
  axy = rng.uniform(0, 60, (50, 2))
  anchors = np.concatenate([axy, axy + 16], -1).astype(np.float32)
  kw = dict(high_threshold=0.5, low_threshold=0.4, allow_low_quality_matches=True)
  batched = jax.jit(lambda g, m: matching.match_boxes(g, m, anchors, **kw))(gt, gt_mask)
  mapped = jax.vmap(lambda g, m: matching.match_boxes(g, m, anchors, **kw))(gt, gt_mask)
  chex.assert_shape(batched, (3, 50))
  np.testing.assert_array_equal(batched, mapped)
  for b in range(3):
    iou = np.asarray(matching.box_iou(gt[b], anchors))
    np.testing.assert_array_equal(batched[b], _loop_matcher(iou, gt_mask[b], 0.5, 0.4, True))
  assert (batched[2] == MatchCode.NEGATIVE).all()
  assert (batched[1] <= 0).all() and (batched[1] == 0).any()
  # gather_matched: per-anchor gt boxes / labels.
  boxes = matching.gather_matched(jnp.asarray(gt), batched)
  chex.assert_shape(boxes, (3, 50, 4))
  labels = matching.gather_matched(jnp.arange(18).reshape(3, 6), batched)
  np.testing.assert_array_equal(labels, np.arange(18).reshape(3, 6)[
      np.arange(3)[:, None], np.maximum(np.asarray(batched), 0)])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_gt_permutation_permutes_matches(seed, allow_low):
  rng = np.random.default_rng(seed)
  # Distinct values: a tie would let the permutation change which gt wins (180 random values
  # rounded to float32 hold a repeated value about once in 10^3 matrices).
  iou = (rng.permutation(6 * 30).reshape(6, 30) / (6 * 30)).astype(np.float32)
  gt_mask = rng.random(6) < 0.8
  perm = rng.permutation(6)
  kw = dict(high_threshold=0.6, low_threshold=0.3, allow_low_quality_matches=allow_low)
  base = np.asarray(matching.iou_matcher(iou, gt_mask, **kw))
  permuted = np.asarray(matching.iou_matcher(iou[perm], gt_mask[perm], **kw))
  # Row perm[j] of the original is row j of the permuted matrix.
  np.testing.assert_array_equal(np.where(permuted >= 0, perm[np.maximum(permuted, 0)], permuted),
                                base)


def test_ssd_matcher_forces_best_anchor():
  iou = np.float32([[0.2, 0.1, 0.6], [0.3, 0.2, 0.1]])
  got = matching.ssd_matcher(iou, np.array([True, True]), threshold=0.5)
  np.testing.assert_array_equal(got, [1, MatchCode.NEGATIVE, 0])
  got = matching.ssd_matcher(iou, np.array([True, False]), threshold=0.5)
  np.testing.assert_array_equal(got, [MatchCode.NEGATIVE] * 2 + [0])


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 64), st.floats(0.0, 1.0))
def test_sampler_counts_and_subsets(seed, num_samples, fraction):
  rng = np.random.default_rng(seed)
  matches = rng.choice([-2, -1, -1, 0, 3], size=(2, 40)).astype(np.int32)
  pos, neg = matching.sample_balanced(jax.random.key(seed), matches, num_samples=num_samples,
                                      positive_fraction=fraction)
  chex.assert_shape([pos, neg], (2, 40))
  pos, neg = np.asarray(pos), np.asarray(neg)
  for b in range(2):
    n_pos = min((matches[b] >= 0).sum(), int(num_samples * fraction))
    n_neg = min((matches[b] == -1).sum(), num_samples - n_pos)
    assert pos[b].sum() == n_pos and neg[b].sum() == n_neg
  assert (matches[pos] >= 0).all() and (matches[neg] == -1).all()
  assert not (pos & neg).any()


def test_sampler_is_uniform_and_keyed():
  matches = np.array([0] * 10 + [-1] * 30 + [-2] * 10, np.int32)
  sample = jax.jit(jax.vmap(lambda k: matching.sample_balanced(
      k, matches, num_samples=8, positive_fraction=0.25)))
  pos, neg = sample(jax.random.split(jax.random.key(0), 2000))
  pos_rate, neg_rate = np.asarray(pos).mean(0), np.asarray(neg).mean(0)
  np.testing.assert_allclose(pos_rate[:10], 2 / 10, atol=0.04)  # 2 of 10 positives
  np.testing.assert_allclose(neg_rate[10:40], 6 / 30, atol=0.04)  # 6 of 30 negatives
  assert pos_rate[10:].sum() == 0 and neg_rate[40:].sum() == 0
  assert not np.array_equal(pos[0], pos[1]) or not np.array_equal(neg[0], neg[1])


@pytest.mark.parametrize("allow_low", [False, True])
def test_iou_matcher_equals_torchvision(allow_low):
  torch = pytest.importorskip("torch")
  pytest.importorskip("torchvision")
  from torchvision.models.detection import _utils as det_utils
  rng = np.random.default_rng(7)
  for _ in range(5):
    iou = _quantized_iou(rng, 9, 200)
    want = det_utils.Matcher(0.5, 0.4, allow_low)(torch.from_numpy(iou)).numpy()
    got = matching.iou_matcher(iou, np.ones(9, bool), high_threshold=0.5, low_threshold=0.4,
                               allow_low_quality_matches=allow_low)
    np.testing.assert_array_equal(got, want)
    # Padding extra rows must not change the answer.
    padded = np.concatenate([iou, np.ones((3, 200), np.float32)])
    got = matching.iou_matcher(padded, np.arange(12) < 9, high_threshold=0.5, low_threshold=0.4,
                               allow_low_quality_matches=allow_low)
    np.testing.assert_array_equal(got, want)


def test_ssd_matcher_equals_torchvision():
  torch = pytest.importorskip("torch")
  pytest.importorskip("torchvision")
  from torchvision.models.detection import _utils as det_utils
  rng = np.random.default_rng(8)
  iou = rng.random((6, 100)).astype(np.float32)  # continuous: distinct best anchors
  want = det_utils.SSDMatcher(0.5)(torch.from_numpy(iou)).numpy()
  np.testing.assert_array_equal(matching.ssd_matcher(iou, np.ones(6, bool), threshold=0.5), want)
