"""Anchor <-> ground-truth matching (torchvision `Matcher` / `SSDMatcher`) and balanced sampling.

Ground truth is padded to a static `M` with a boolean mask; a padded row is never matched. Every
function works on arbitrary leading batch dimensions (or under `jax.vmap`) and under `jax.jit`.

Match codes (int32, one per anchor): `>= 0` is the index of the matched ground-truth box,
`MatchCode.NEGATIVE` (-1) is background, `MatchCode.IGNORE` (-2) is between the thresholds and
excluded from the losses. These equal torchvision's `Matcher.BELOW_LOW_THRESHOLD` and
`Matcher.BETWEEN_THRESHOLDS`.
"""

import enum
import math

import jax
import jax.numpy as jnp

from jaxdet.ops.boxes import box_iou


class MatchCode(enum.IntEnum):
  """Negative match codes; non-negative codes are ground-truth indices."""
  NEGATIVE = -1
  IGNORE = -2


def _masked_quality(quality, gt_mask):
  # NaN would compare False with both thresholds and become a match: count it as no overlap.
  # Padded rows get -inf so that they never win a max over ground truth.
  quality = jnp.where(jnp.isnan(quality), -jnp.inf, quality)
  return jnp.where(gt_mask[..., :, None], quality, -jnp.inf)


def iou_matcher(iou: jnp.ndarray, gt_mask: jnp.ndarray, *, high_threshold: float,
                low_threshold: float, allow_low_quality_matches: bool = False) -> jnp.ndarray:
  """torchvision `Matcher` on a padded quality matrix.

  Each anchor takes the ground truth of highest quality (first index on ties); quality
  >= high_threshold keeps it, [low_threshold, high_threshold) gives IGNORE, < low_threshold gives
  NEGATIVE. With `allow_low_quality_matches`, every anchor that attains some valid ground truth's
  maximum quality (ties included; also when that maximum is 0, as torchvision) gets its best match
  back. All-masked ground truth gives all NEGATIVE (torchvision raises on empty targets).

  Args:
    iou: float [..., M, A] match quality (usually IoU) of M padded ground-truth boxes x A anchors.
    gt_mask: bool [..., M], True for real ground truth.
    high_threshold: quality at or above which an anchor is positive.
    low_threshold: quality below which an anchor is negative (<= high_threshold).
    allow_low_quality_matches: also match each ground truth's best anchors (RetinaNet, RPN).

  Returns:
    int32 [..., A] match codes: gt index >= 0, MatchCode.NEGATIVE or MatchCode.IGNORE.
  """
  _check_thresholds(low_threshold, high_threshold)
  if iou.shape[:-1] != gt_mask.shape:
    raise ValueError(f"iou {iou.shape} must be [..., M, A] with gt_mask [..., M], got "
                     f"{gt_mask.shape}")
  row = lambda m: _no_nan(jax.lax.dynamic_index_in_dim(iou, m, axis=iou.ndim - 2, keepdims=False))
  best_per_gt = jnp.max(_no_nan(iou), axis=-1) if allow_low_quality_matches else None
  return _match_rows(row, gt_mask, iou.shape[:-2] + iou.shape[-1:], best_per_gt,
                     high_threshold=high_threshold, low_threshold=low_threshold)


def _check_thresholds(low_threshold, high_threshold):
  if low_threshold > high_threshold:
    raise ValueError(f"low_threshold {low_threshold} must be <= high_threshold {high_threshold}")


def _no_nan(quality):
  # NaN would compare False with both thresholds and become a match: count it as no overlap.
  return jnp.where(jnp.isnan(quality), -jnp.inf, quality)


def _match_rows(row, gt_mask, out_shape, best_per_gt, *, high_threshold, low_threshold):
  """The matcher as one pass over ground-truth rows (`row(m)` -> quality [..., A]).

  A loop over the M rows keeps the running best (strict '>' keeps the first index on ties, as
  argmax) on [..., A] arrays: XLA's CPU argmax over the gt axis of [..., M, A] was ~5x slower.
  """
  if gt_mask.shape[-1] == 0:  # no ground-truth slots at all
    return jnp.full(out_shape, MatchCode.NEGATIVE, jnp.int32)

  def body(m, carry):
    best, best_gt, attains = carry
    valid = jax.lax.dynamic_index_in_dim(gt_mask, m, axis=gt_mask.ndim - 1)
    quality = jnp.where(valid, row(m), -jnp.inf)  # padded rows never win
    better = quality > best
    if best_per_gt is not None:
      top = jax.lax.dynamic_index_in_dim(best_per_gt, m, axis=best_per_gt.ndim - 1)
      attains = attains | (valid & (quality == top))
    return jnp.where(better, quality, best), jnp.where(better, m, best_gt), attains

  init = (jnp.full(out_shape, -jnp.inf, jnp.float32), jnp.zeros(out_shape, jnp.int32),
          jnp.zeros(out_shape, bool))
  best, best_gt, attains = jax.lax.fori_loop(0, gt_mask.shape[-1], body, init)
  codes = jnp.where(best < high_threshold, jnp.int32(MatchCode.IGNORE), best_gt)
  codes = jnp.where(best < low_threshold, jnp.int32(MatchCode.NEGATIVE), codes)
  codes = jnp.where(attains, best_gt, codes)
  return jnp.where(jnp.any(gt_mask, axis=-1, keepdims=True), codes,
                   jnp.int32(MatchCode.NEGATIVE))


def ssd_matcher(iou: jnp.ndarray, gt_mask: jnp.ndarray, *, threshold: float) -> jnp.ndarray:
  """torchvision `SSDMatcher`: threshold matching, then each ground truth's best anchor is forced.

  If two ground-truth boxes share the same best anchor, the higher gt index wins (torchvision's
  index assignment writes in order, so the last write wins on CPU).

  Args:
    iou: float [..., M, A] quality of padded ground truth x anchors.
    gt_mask: bool [..., M], True for real ground truth.
    threshold: quality at or above which an anchor is positive; below it is NEGATIVE.

  Returns:
    int32 [..., A] match codes (never IGNORE).
  """
  codes = iou_matcher(iou, gt_mask, high_threshold=threshold, low_threshold=threshold)
  quality = _masked_quality(iou, gt_mask)
  num_gt, num_anchors = iou.shape[-2], iou.shape[-1]
  best_anchor = jnp.argmax(quality, axis=-1)  # [..., M]
  forced = (best_anchor[..., :, None] == jnp.arange(num_anchors)) & gt_mask[..., :, None]
  gt_index = jnp.arange(num_gt, dtype=jnp.int32)[:, None]
  forced_gt = jnp.max(jnp.where(forced, gt_index, -1), axis=-2)
  return jnp.where(forced_gt >= 0, forced_gt, codes)


def match_boxes(gt_boxes_xyxy: jnp.ndarray, gt_mask: jnp.ndarray, anchors_xyxy: jnp.ndarray, *,
                high_threshold: float, low_threshold: float,
                allow_low_quality_matches: bool = False) -> jnp.ndarray:
  """`iou_matcher` on the IoU of padded ground truth and anchors.

  Args:
    gt_boxes_xyxy: float [..., M, 4] padded ground-truth boxes.
    gt_mask: bool [..., M], True for real boxes.
    anchors_xyxy: float [..., A, 4] (or [A, 4], broadcast over the batch).
    high_threshold: see `iou_matcher`.
    low_threshold: see `iou_matcher`.
    allow_low_quality_matches: see `iou_matcher`.

  Returns:
    int32 [..., A] match codes.
  """
  if gt_boxes_xyxy.shape[:-1] != gt_mask.shape:
    raise ValueError(f"gt_boxes_xyxy {gt_boxes_xyxy.shape} must be [..., M, 4] with gt_mask "
                     f"[..., M], got {gt_mask.shape}")
  iou = box_iou(gt_boxes_xyxy, anchors_xyxy)  # [..., M, A]
  return iou_matcher(iou, jnp.broadcast_to(gt_mask, iou.shape[:-1]),
                     high_threshold=high_threshold, low_threshold=low_threshold,
                     allow_low_quality_matches=allow_low_quality_matches)


def gather_matched(values: jnp.ndarray, matches: jnp.ndarray) -> jnp.ndarray:
  """Per-anchor ground-truth values; anchors with a negative code get row 0 (mask them).

  Args:
    values: [..., M, *F] per ground-truth values (boxes [..., M, 4], labels [..., M]).
    matches: int [..., A] match codes.

  Returns:
    [..., A, *F] values[..., max(matches, 0), ...], dtype of `values`.
  """
  idx = jnp.maximum(matches, 0)
  batch = matches.ndim - 1
  idx = idx.reshape(idx.shape + (1,) * (values.ndim - batch - 1))
  return jnp.take_along_axis(values, idx, axis=batch)


def sample_balanced(key: jax.Array, matches: jnp.ndarray, *, num_samples: int,
                    positive_fraction: float) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Fixed-shape `BalancedPositiveNegativeSampler`: random positives and negatives as masks.

  Positives are codes >= 0, negatives are `MatchCode.NEGATIVE`, IGNORE is never sampled.
  num_pos = min(#positives, int(num_samples * positive_fraction)) and
  num_neg = min(#negatives, num_samples - num_pos), drawn uniformly without replacement,
  independently for each leading index.

  Args:
    key: PRNG key.
    matches: int [..., A] match codes.
    num_samples: samples per image (torchvision `batch_size_per_image`).
    positive_fraction: target fraction of positives.

  Returns:
    (positive_mask, negative_mask), bool [..., A] each, disjoint.
  """
  if num_samples < 1 or not 0.0 <= positive_fraction <= 1.0:
    raise ValueError(f"need num_samples >= 1 and 0 <= positive_fraction <= 1, got "
                     f"{num_samples}, {positive_fraction}")
  num_anchors = matches.shape[-1]
  lead = matches.shape[:-1]
  # Random 31-bit priorities; top_k breaks the (rare) ties by index and we keep exactly the first
  # `count` of its indices, so the counts are exact. Much cheaper than a full permutation.
  priority = (jax.random.bits(key, matches.shape, jnp.uint32) >> 1).astype(jnp.int32)
  row_offset = (jnp.arange(math.prod(lead), dtype=jnp.int32) * num_anchors).reshape(lead + (1,))

  def pick(candidates, count, max_count):
    k = min(max_count, num_anchors)
    if k == 0:
      return jnp.zeros_like(candidates)
    _, index = jax.lax.top_k(jnp.where(candidates, priority, -1), k)  # [..., k]
    keep = jnp.arange(k) < count[..., None]
    mask = jnp.zeros((math.prod(lead) * num_anchors,), bool)
    mask = mask.at[(row_offset + index).reshape(-1)].max(keep.reshape(-1))
    return mask.reshape(matches.shape)

  positive, negative = matches >= 0, matches == MatchCode.NEGATIVE
  max_pos = int(num_samples * positive_fraction)
  num_pos = jnp.minimum(positive.sum(-1), max_pos)
  num_neg = jnp.minimum(negative.sum(-1), num_samples - num_pos)
  return pick(positive, num_pos, max_pos), pick(negative, num_neg, num_samples)
