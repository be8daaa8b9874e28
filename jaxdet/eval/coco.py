"""COCO bbox evaluation equal to pycocotools' ``COCOeval`` (evaluate + accumulate + summarize).

The accumulation uses that the interpolated precision at a recall threshold only depends on the
true positives: recall changes only at a true positive and precision is highest there, so
``precision[t, r, k, a, m]`` is the max over true positives from the first one whose recall reaches
``recThrs[r]``. Every float is computed with the same operations as pycocotools, so results agree
bit for bit (tests compare to 1e-12).
"""

import numpy as np

from jaxdet.eval import coco_match
from jaxdet.eval.inputs import load_detections, load_ground_truth

# pycocotools' defaults, built the same way (linspace, not arange) so that 0.75 is exact.
IOU_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
AREA_RANGES = ((0 ** 2, 1e5 ** 2), (0 ** 2, 32 ** 2), (32 ** 2, 96 ** 2), (96 ** 2, 1e5 ** 2))
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def coco_evaluate(gt, detections, *, iou_type: str = "bbox", max_dets=(1, 10, 100),
                  area_ranges=None) -> dict:
  """COCO bbox AP/AR, equal to ``pycocotools.cocoeval.COCOeval(gt, dt, "bbox")``.

  Args:
    gt: COCO annotation dict or path to its JSON. ``iscrowd`` (default 0) marks crowd regions;
      ``area`` (default ``w * h``) decides the area range. As in pycocotools an ``ignore`` field is
      overridden by ``iscrowd``.
    detections: list of COCO result dicts (``image_id``, ``category_id``, ``bbox`` [x, y, w, h],
      ``score``), a path to such a JSON list, or arrays ``(image_ids [D] int, boxes_xywh [D, 4]
      float, scores [D] float, category_ids [D] int)``.
    iou_type: only ``"bbox"``.
    max_dets: three increasing detection limits per image (pycocotools' ``maxDets``).
    area_ranges: four ``(lo, hi)`` area ranges for all/small/medium/large (COCO default).

  Returns:
    dict with the 12 stats as floats under ``AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100,
    ARs, ARm, ARl`` (-1 where undefined; as in pycocotools the AP stats read the ``maxDets=100``
    column, so they are -1 when 100 is not in ``max_dets``), ``per_class`` (category name -> AP@[.5:.95], -1 for a
    category without ground truth), ``category_ids`` [K] int64, ``category_names`` (K str),
    ``precision`` [T, R, K, A, M] float64 and ``recall`` [T, K, A, M] float64 exactly as
    ``COCOeval.eval["precision"]`` / ``["recall"]``, ``iou_thresholds`` [T], ``recall_thresholds``
    [R], and ``per_detection`` (area "all", the largest max_dets, in accumulation order):
    ``scores`` [D] float64, ``category_index`` [D] int64, ``tp`` [T, D] bool, ``ignored`` [T, D]
    bool and ``num_gt`` [K] int64 non-ignored ground truths (used by threshold metrics, plots).

  Raises:
    ValueError: bad input (see `jaxdet.eval.inputs`) or unsupported options.
  """
  if iou_type != "bbox":
    raise ValueError(f"iou_type {iou_type!r} is not supported (only 'bbox')")
  max_dets = sorted(int(m) for m in max_dets)
  if len(max_dets) != 3 or max_dets[0] < 1:
    raise ValueError(f"max_dets must be three positive limits, got {max_dets}")
  area_ranges = AREA_RANGES if area_ranges is None else tuple(map(tuple, area_ranges))
  if len(area_ranges) != 4 or any(len(r) != 2 for r in area_ranges):
    raise ValueError("area_ranges must be four (lo, hi) pairs: all, small, medium, large")

  g = load_ground_truth(gt)
  d = load_detections(detections, g)
  m = coco_match.match(g, d, iou_thresholds=IOU_THRESHOLDS, area_ranges=area_ranges,
                       max_det=max_dets[-1])
  precision, recall, per_detection = accumulate(g, m, area_ranges=area_ranges,
                                                max_dets=max_dets)
  stats = summarize(precision, recall, max_dets=max_dets)
  per_class = {}
  for k, name in enumerate(g.category_names):
    s = precision[:, :, k, 0, -1]
    key = name if name not in per_class else f"{name} ({g.category_ids[k]})"
    per_class[key] = float(np.mean(s[s > -1])) if (s > -1).any() else -1.0
  return {**stats, "per_class": per_class, "category_ids": g.category_ids,
          "category_names": g.category_names, "precision": precision, "recall": recall,
          "iou_thresholds": IOU_THRESHOLDS, "recall_thresholds": RECALL_THRESHOLDS,
          "per_detection": per_detection}


def detection_flags(gt, m, columns, *, area_ranges):
  """True-positive and ignore flags (pycocotools' dtm / dtIg) of candidate detections, per (t, a).

  Args:
    gt: `GroundTruth`; m: `coco_match.Matches`; columns: [D'] int64 indices into candidates.

  Returns:
    (tp [T, A, D'] bool, ignored [T, A, D'] bool). A match to annotation id 0 counts as
    unmatched, as in pycocotools (it stores the matched id and tests it for truth).
  """
  num_gt = len(gt.area)
  # One lookup per entry: bit 0 = matched to a non-zero id, bit 1 = matched gt is ignored at a.
  # Row index num_gt stands for "no match" (code 0).
  gt_ignored = gt.iscrowd[None] | coco_match.ignored_by_area(gt.area, area_ranges)  # [A, G]
  table = np.zeros((len(area_ranges), num_gt + 1), np.uint8)
  table[:, :num_gt] = 2 * gt_ignored + (gt.ann_ids != 0)[None]
  gi = m.gt_index[:, :, columns]
  gi = np.where(gi < 0, num_gt, gi)
  gi += (np.arange(len(area_ranges)) * (num_gt + 1)).astype(gi.dtype)[None, :, None]
  codes = table.ravel()[gi]
  nonzero_id = (codes & 1).astype(bool)
  matched_ignored = codes >= 2
  dt_out = coco_match.ignored_by_area(m.area[m.candidates[columns]], area_ranges)[None]
  ignored = matched_ignored | (~nonzero_id & dt_out)
  return nonzero_id & ~matched_ignored, ignored


def _exclusive(c, starts):
  """Prefix counts before each start: c [..., N] inclusive cumsum, starts [S] -> [..., S]."""
  if c.shape[-1] == 0:
    return np.zeros(c.shape[:-1] + (len(starts),), c.dtype)
  before = c[..., np.maximum(starts - 1, 0)]
  before[..., starts == 0] = 0
  return before


def accumulate(gt, m, *, area_ranges, max_dets):
  """pycocotools ``accumulate``.

  Detections that cannot match ("static": no ground truth at IoU >= 0.5) have flags that depend
  only on the area range, so their counts are one 1-D cumsum per (a, maxDet); only the
  candidates need per-threshold arrays.

  Returns:
    precision [T, R, K, A, M] float64, recall [T, K, A, M] float64 and the per-detection flags
    (see `coco_evaluate`).
  """
  t_count, r_count = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS)
  k_count, a_count, m_count = len(gt.category_ids), len(area_ranges), len(max_dets)
  precision = -np.ones((t_count, r_count, k_count, a_count, m_count))
  recall = -np.ones((t_count, k_count, a_count, m_count))
  # pycocotools' order: category, -score (stable) over images in id order, then rank. The
  # matches are sorted by (image, category, rank) already, so a stable 2-key sort suffices.
  order = np.lexsort((-m.scores, m.category_index))
  cat, rank = m.category_index[order], m.rank[order]
  dt_out = coco_match.ignored_by_area(m.area[order], area_ranges)  # [A, N]
  position = np.empty(len(order), np.int64)
  position[order] = np.arange(len(order))
  by_position = np.argsort(position[m.candidates])
  dynamic = position[m.candidates][by_position]  # candidates' positions, ascending
  static = np.ones(len(order), bool)
  static[dynamic] = False
  tp_dyn, ignored_dyn = detection_flags(gt, m, by_position, area_ranges=area_ranges)
  cat_start = np.searchsorted(cat, np.arange(k_count))
  dyn_cat, dyn_rank = cat[dynamic], rank[dynamic]
  dyn_cat_start = np.searchsorted(dyn_cat, np.arange(k_count))
  not_ignored = ~(gt.iscrowd[None] | coco_match.ignored_by_area(gt.area, area_ranges))
  npig = np.stack([np.bincount(gt.category_index[not_ignored[a]], minlength=k_count)
                   for a in range(a_count)])  # [A, K]
  for a in range(a_count):
    for mi, max_det in enumerate(max_dets):
      static_valid = np.cumsum(static & ~dt_out[a] & (rank < max_det), dtype=np.int32)
      static_base = _exclusive(static_valid, cat_start)  # [K]
      in_top = dyn_rank < max_det
      dyn_valid = np.cumsum(~ignored_dyn[:, a] & in_top, axis=1, dtype=np.int32)  # [T, M]
      dyn_tp_flags = tp_dyn[:, a] & in_top
      dyn_tp = np.cumsum(dyn_tp_flags, axis=1, dtype=np.int32)
      ti, j = np.nonzero(dyn_tp_flags)  # (t, category) order, as seg below
      k = dyn_cat[j]
      # Counts inside the (t, category) segment up to and including each true positive.
      n_tp = dyn_tp[ti, j] - _exclusive(dyn_tp, dyn_cat_start)[ti, k]
      n_valid = (dyn_valid[ti, j] - _exclusive(dyn_valid, dyn_cat_start)[ti, k]
                 + static_valid[dynamic[j]] - static_base[k])
      p, r = _precision_recall(n_tp, n_valid, ti * k_count + k, npig[a], t_count)
      precision[:, :, :, a, mi] = p
      recall[:, :, a, mi] = r
  tp_all = np.zeros((t_count, len(order)), bool)
  tp_all[:, dynamic] = tp_dyn[:, 0]
  ignored_all = np.broadcast_to(dt_out[0], tp_all.shape).copy()
  ignored_all[:, dynamic] = ignored_dyn[:, 0]
  per_detection = {"scores": m.scores[order], "category_index": cat, "tp": tp_all,
                   "ignored": ignored_all, "num_gt": npig[0]}
  return precision, recall, per_detection


def _precision_recall(n_tp, n_valid, seg, npig, t_count):
  """One (area, maxDet) slice from its true positives.

  Args:
    n_tp, n_valid: [P] int64 true positives / non-ignored detections so far in the segment, at
      each true positive, in flat order.
    seg: [P] int64 segment id t * K + k (ascending).
    npig: [K] non-ignored ground truths per category.
    t_count: number of IoU thresholds.

  Returns:
    precision [T, R, K], recall [T, K] float64 (-1 where a category has no ground truth).
  """
  k_count, r_count = len(npig), len(RECALL_THRESHOLDS)
  tp_f = n_tp.astype(np.float64)
  fp_f = (n_valid - n_tp).astype(np.float64)
  pr = tp_f / (fp_f + tp_f + np.spacing(1))  # same float ops as pycocotools
  groups = np.arange(t_count * k_count)
  g_start = np.searchsorted(seg, groups)
  g_end = np.searchsorted(seg, groups, side="right")
  n_tp_group = (g_end - g_start).reshape(t_count, k_count)
  has_gt = npig > 0
  npig_f = np.where(has_gt, npig, 1).astype(np.float64)
  recall = np.where(has_gt[None], n_tp_group / npig_f[None], -1.0)

  need = np.broadcast_to(first_reaching(npig_f)[None], (t_count, r_count, k_count))
  q = np.zeros((t_count, r_count, k_count))
  ti, ri, ki = np.nonzero(need <= n_tp_group[:, None, :])
  if len(ti):
    g = ti * k_count + ki
    # Interpolated precision: max over the true positives from the first one reaching recall.
    bounds = np.stack([g_start[g] + need[ti, ri, ki] - 1, g_end[g]], axis=1).ravel()
    q[ti, ri, ki] = np.maximum.reduceat(np.append(pr, 0.0), bounds)[::2]
  q = np.where(has_gt[None, None], q, -1.0)
  return q, recall


def first_reaching(npig_f: np.ndarray) -> np.ndarray:
  """Smallest i >= 1 with ``i / npig >= recThr`` in float64, as pycocotools' searchsorted finds.

  ``ceil(thr * npig)`` alone is off by one in ~0.3% of cases (rounding of the product), so it is
  corrected in both directions with the exact float comparison.

  Args:
    npig_f: [K] float64 positive ground-truth counts (> 0).

  Returns:
    [R, K] int64 (may exceed npig: that recall is never reached).
  """
  thr = RECALL_THRESHOLDS[:, None]
  need = np.maximum(np.ceil(thr * npig_f[None]).astype(np.int64), 1)
  for _ in range(2):
    need = np.where((need > 1) & ((need - 1) / npig_f >= thr), need - 1, need)
    need = np.where(need / npig_f < thr, need + 1, need)
  return need


def summarize(precision, recall, *, max_dets) -> dict:
  """pycocotools ``summarize`` for bbox: the 12 stats as a dict of floats."""
  iou_thrs = IOU_THRESHOLDS
  labels = ["all", "small", "medium", "large"]

  def one(ap, iou_thr=None, area="all", max_det=100):
    a = [i for i, lbl in enumerate(labels) if lbl == area]
    mi = [i for i, d in enumerate(max_dets) if d == max_det]
    s = precision if ap else recall
    if iou_thr is not None:
      s = s[np.where(iou_thr == iou_thrs)[0]]
    s = s[:, :, :, a, mi] if ap else s[:, :, a, mi]
    return float(np.mean(s[s > -1])) if len(s[s > -1]) else -1.0

  last = max_dets[2]
  values = [one(1), one(1, .5, max_det=last), one(1, .75, max_det=last),
            one(1, area="small", max_det=last), one(1, area="medium", max_det=last),
            one(1, area="large", max_det=last), one(0, max_det=max_dets[0]),
            one(0, max_det=max_dets[1]), one(0, max_det=last),
            one(0, area="small", max_det=last), one(0, area="medium", max_det=last),
            one(0, area="large", max_det=last)]
  return dict(zip(STAT_NAMES, values))
