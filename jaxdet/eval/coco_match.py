"""COCO bbox matching (pycocotools ``COCOeval.evaluate`` semantics), vectorized.

pycocotools matches greedily, per (image, category, IoU threshold, area range), detections in
score order to the best still-free ground truth. The only sequential dependency is across
detection *ranks* inside a group, so we step over ranks (<= max_det steps) and process every
group, threshold and area range of that rank at once with array ops.

Exact rules reproduced (from pycocotools' cocoeval.py):
  * per group, detections sorted by -score with a stable sort (file order breaks ties) and cut to
    ``max_det``;
  * a detection takes, among free non-ignored ground truths with IoU >= t, the one with the highest
    IoU (on IoU ties the *later* one in file order); only if there is none, the same among ignored
    ones (crowd or outside the area range). Crowd ground truths are never used up;
  * ``min(t, 1 - 1e-10)`` is the effective threshold;
  * crowd IoU divides by the detection area; IoU uses box areas, area ranges the ``area`` field.
"""

from typing import NamedTuple

import numpy as np

from jaxdet.eval.inputs import Detections, GroundTruth


class Matches(NamedTuple):
  """Per-detection matching result; detections sorted by (group, rank), cut to ``max_det``.

  Attributes:
    image_index, category_index, order: [D] int64 (see `Detections`).
    scores: [D] float64.
    rank: [D] int64 rank of the detection by score inside its (image, category) group.
    area: [D] float64 detection area w * h.
    candidates: [C] int64 detections with a ground truth at IoU >= min threshold (the only ones
      that can match), ascending.
    gt_index: [T, A, C] int32 matched ground-truth row (`GroundTruth` order) of each candidate,
      -1 if none.
  """
  image_index: np.ndarray
  category_index: np.ndarray
  order: np.ndarray
  scores: np.ndarray
  rank: np.ndarray
  area: np.ndarray
  candidates: np.ndarray
  gt_index: np.ndarray


def pairwise_iou_xywh(dt_xywh: np.ndarray, gt_xywh: np.ndarray, gt_crowd: np.ndarray):
  """Row-wise IoU of box pairs, bit-identical to pycocotools' ``maskUtils.iou`` for boxes.

  Args:
    dt_xywh: [P, 4] float64 detection boxes (x, y, w, h).
    gt_xywh: [P, 4] float64 ground-truth boxes (x, y, w, h).
    gt_crowd: [P] bool; a crowd union is the detection area alone.

  Returns:
    [P] float64 IoU (0 where the boxes do not overlap).
  """
  dx, dy, dw, dh = dt_xywh.T
  gx, gy, gw, gh = gt_xywh.T
  w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
  h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
  overlap = (w > 0) & (h > 0)
  inter = w * h
  det_area = dw * dh
  union = np.where(gt_crowd, det_area, det_area + gw * gh - inter)
  out = np.zeros(len(dt_xywh))
  np.divide(inter, union, out=out, where=overlap)
  return out


def ignored_by_area(area: np.ndarray, area_ranges) -> np.ndarray:
  """[A, N] bool: outside each closed range [lo, hi] (pycocotools' ``_ignore`` rule)."""
  rng = np.asarray(area_ranges, np.float64)
  return (area[None] < rng[:, :1]) | (area[None] > rng[:, 1:])


def match(gt: GroundTruth, dt: Detections, *, iou_thresholds, area_ranges, max_det: int):
  """Greedy COCO matching of all detections at all IoU thresholds and area ranges.

  Args:
    gt: parsed ground truth ([G] rows).
    dt: parsed detections.
    iou_thresholds: [T] float IoU thresholds.
    area_ranges: [A, 2] closed area ranges.
    max_det: detections kept per (image, category), by score.

  Returns:
    `Matches`.
  """
  num_cats = len(gt.category_ids)
  thr = np.minimum(np.asarray(iou_thresholds, np.float64), 1 - 1e-10)
  t_count, a_count = len(thr), len(area_ranges)

  dkey = dt.image_index * num_cats + dt.category_index
  sort = np.lexsort((-dt.scores, dkey))  # stable: input order breaks score ties
  dkey = dkey[sort]
  rank = np.arange(len(dkey)) - np.searchsorted(dkey, dkey, side="left")
  keep = sort[rank < max_det]
  rank, dkey = rank[rank < max_det], dkey[rank < max_det]
  boxes = dt.boxes_xywh[keep]
  num_dt = len(keep)

  # All (detection, ground truth) pairs of the same group; ground truth is sorted by group.
  gkey = gt.image_index * num_cats + gt.category_index
  lo = np.searchsorted(gkey, dkey, side="left")
  count = np.searchsorted(gkey, dkey, side="right") - lo
  pair_dt = np.repeat(np.arange(num_dt), count)
  first = np.cumsum(count) - count
  pair_gt = np.arange(len(pair_dt)) + np.repeat(lo - first, count)
  iou = pairwise_iou_xywh(boxes[pair_dt], gt.boxes_xywh[pair_gt], gt.iscrowd[pair_gt])
  # Pairs below the lowest threshold can never match.
  useful = iou >= thr.min() if t_count else np.zeros(len(iou), bool)
  pair_dt, pair_gt, iou = pair_dt[useful], pair_gt[useful], iou[useful]
  # pair_dt is ascending (pairs were built detection by detection): unique without hashing.
  new_dt = np.r_[True, pair_dt[1:] != pair_dt[:-1]] if len(pair_dt) else np.zeros(0, bool)
  candidates = pair_dt[new_dt]
  pair_dt = np.cumsum(new_dt) - 1  # now indexes candidates
  rank_c = rank[candidates]

  # Order pairs by (rank, detection, IoU, gt row): the last pair of a detection that passes all
  # tests is pycocotools' choice, so a max over "position in segment" picks it.
  pord = np.lexsort((iou, pair_dt, rank_c[pair_dt]))  # stable: gt rows stay ascending
  pair_dt, pair_gt, iou = pair_dt[pord], pair_gt[pord], iou[pord]
  pair_rank = rank_c[pair_dt]

  num_gt = len(gt.area)
  not_ignored = ~(gt.iscrowd[None] | ignored_by_area(gt.area, area_ranges))  # [A, G]
  taken = np.zeros((t_count, a_count, num_gt), bool)
  gt_index = np.full((t_count, a_count, len(candidates)), -1, np.int32)
  big = 1 << int(max(int(count.max()) if num_dt else 1, 1)).bit_length()
  rank_bounds = np.searchsorted(pair_rank, np.arange(max_det + 1))
  for r in range(max_det):
    p0, p1 = rank_bounds[r], rank_bounds[r + 1]
    if p0 == p1:
      continue
    pdt, pgt, piou = pair_dt[p0:p1], pair_gt[p0:p1], iou[p0:p1]
    seg = np.flatnonzero(np.r_[True, pdt[1:] != pdt[:-1]])
    pos = np.arange(p1 - p0) - np.repeat(seg, np.diff(np.r_[seg, p1 - p0]))
    ok = (piou[None, None] >= thr[:, None, None]) & ~taken[:, :, pgt]
    key = np.where(ok, pos + big * not_ignored[:, pgt][None], -1)
    best = np.maximum.reduceat(key, seg, axis=2)  # [T, A, S]
    has = best >= 0
    chosen = pgt[seg[None, None] + np.where(has, best & (big - 1), 0)]
    gt_index[:, :, pdt[seg]] = np.where(has, chosen, -1)
    use = has & ~gt.iscrowd[chosen]
    ti, ai, _ = np.nonzero(use)
    taken[ti, ai, chosen[use]] = True

  area = boxes[:, 2] * boxes[:, 3]
  return Matches(dt.image_index[keep], dt.category_index[keep], dt.order[keep],
                 dt.scores[keep], rank, area, candidates, gt_index)
