"""Pascal VOC AP (VOC2007 11-point and VOC2010+ all-point), devkit semantics, vectorized.

Devkit rules (``voc_eval.py``): per class, detections of all images sorted by score; each is
compared with *all* ground truths of its class in its image, ``jmax`` = the first one with the
highest IoU. If IoU > threshold (``>=`` as an option) and ``jmax`` is difficult, the detection is
neither TP nor FP; otherwise it is a TP if no earlier detection took ``jmax``, else an FP (there is
no fall-back to the second best). Difficult ground truths do not count as positives.

Since ``jmax`` never depends on earlier matches, "TP" is simply "first detection (in score order)
whose ``jmax`` is that ground truth", which needs no sequential loop.
"""

import numpy as np

from jaxdet.eval.inputs import load_detections, load_ground_truth


def voc_iou_xywh(dt_xywh: np.ndarray, gt_xywh: np.ndarray, *, plus_one: bool = False):
  """Row-wise IoU of box pairs as the VOC devkit computes it.

  Args:
    dt_xywh: [P, 4] float64 boxes (x, y, w, h), x2 = x + w.
    gt_xywh: [P, 4] float64 boxes.
    plus_one: legacy convention where a box spans ``x2 - x1 + 1`` pixels.

  Returns:
    [P] float64 IoU.
  """
  one = 1.0 if plus_one else 0.0
  dx1, dy1 = dt_xywh[:, 0], dt_xywh[:, 1]
  dx2, dy2 = dx1 + dt_xywh[:, 2], dy1 + dt_xywh[:, 3]
  gx1, gy1 = gt_xywh[:, 0], gt_xywh[:, 1]
  gx2, gy2 = gx1 + gt_xywh[:, 2], gy1 + gt_xywh[:, 3]
  iw = np.maximum(np.minimum(dx2, gx2) - np.maximum(dx1, gx1) + one, 0.0)
  ih = np.maximum(np.minimum(dy2, gy2) - np.maximum(dy1, gy1) + one, 0.0)
  inter = iw * ih
  union = (dx2 - dx1 + one) * (dy2 - dy1 + one) + (gx2 - gx1 + one) * (gy2 - gy1 + one) - inter
  out = np.zeros(len(inter))
  np.divide(inter, union, out=out, where=union > 0)
  return out


def average_precision(recall: np.ndarray, precision: np.ndarray, *, use_07_metric: bool):
  """AP from a PR curve in score order.

  Args:
    recall: [N] float64, non-decreasing.
    precision: [N] float64.
    use_07_metric: VOC2007 11-point interpolation (max precision at recall >= 0, 0.1, ..., 1.0);
      otherwise the VOC2010+ area under the monotone envelope. The thresholds are ``i * 0.1`` in
      float64 as in the devkit's ``np.arange(0., 1.1, 0.1)`` (so 0.6000000000000001: a recall of
      exactly 0.6 does not reach it), which the published VOC test case depends on.

  Returns:
    float AP.
  """
  if use_07_metric:
    thr = np.linspace(0.0, 1.0, 11)
    reach = recall[None, :] >= thr[:, None]  # [11, N]
    best = np.where(reach, precision[None, :], 0.0).max(axis=1, initial=0.0)
    return float(np.sum(best / 11.0))
  mrec = np.concatenate([[0.0], recall, [1.0]])
  mpre = np.concatenate([[0.0], precision, [0.0]])
  mpre = np.maximum.accumulate(mpre[::-1])[::-1]
  i = np.flatnonzero(mrec[1:] != mrec[:-1])
  return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def voc_evaluate(gt, detections, *, iou_threshold: float = 0.5, use_07_metric: bool = False,
                 plus_one: bool = False, inclusive: bool = False) -> dict:
  """Pascal VOC per-class AP and mAP.

  Args:
    gt: COCO annotation dict or JSON path. An annotation is *difficult* when its ``difficult``
      (else ``ignore``) field or ``iscrowd`` is truthy.
    detections: as for `jaxdet.eval.coco_evaluate` (list of result dicts, JSON path or arrays).
    iou_threshold: IoU needed for a match.
    use_07_metric: VOC2007 11-point AP instead of the VOC2010+ all-point AP.
    plus_one: legacy "+1 pixel" box convention (width = x2 - x1 + 1), off by default.
    inclusive: match at IoU >= threshold instead of the devkit's IoU > threshold.

  Returns:
    dict with ``mAP`` (mean over classes with at least one non-difficult ground truth),
    ``per_class`` (name -> AP, -1 for a class without positives), ``recall`` / ``precision``
    (name -> [N_k] float64 curves in score order) and ``num_positives`` (name -> int).
  """
  g = load_ground_truth(gt)
  d = load_detections(detections, g)
  num_cats = len(g.category_ids)
  difficult = g.difficult | g.iscrowd

  sort = np.lexsort((d.order, -d.scores, d.category_index))
  dkey = (d.image_index * num_cats + d.category_index)[sort]
  boxes = d.boxes_xywh[sort]
  gkey = g.image_index * num_cats + g.category_index
  lo = np.searchsorted(gkey, dkey, side="left")
  count = np.searchsorted(gkey, dkey, side="right") - lo
  pair_dt = np.repeat(np.arange(len(dkey)), count)
  pair_gt = np.arange(len(pair_dt)) + np.repeat(lo - (np.cumsum(count) - count), count)
  iou = voc_iou_xywh(boxes[pair_dt], g.boxes_xywh[pair_gt], plus_one=plus_one)

  # First maximum per detection: order pairs by (det, -iou, gt) and take each det's first pair.
  pord = np.lexsort((pair_gt, -iou, pair_dt))
  first = pord[np.r_[True, pair_dt[pord][1:] != pair_dt[pord][:-1]]] if len(pord) else pord
  ovmax = np.zeros(len(dkey))
  jmax = np.full(len(dkey), -1)
  ovmax[pair_dt[first]] = iou[first]
  jmax[pair_dt[first]] = pair_gt[first]
  hit = (ovmax >= iou_threshold) if inclusive else (ovmax > iou_threshold)
  hit &= jmax >= 0
  on_difficult = np.zeros(len(dkey), bool)
  on_difficult[hit] = difficult[jmax[hit]]
  candidate = np.flatnonzero(hit & ~on_difficult)
  _, first_of_gt = np.unique(jmax[candidate], return_index=True)
  tp = np.zeros(len(dkey), bool)
  tp[candidate[first_of_gt]] = True
  fp = ~tp & ~on_difficult

  cats = d.category_index[sort]
  npos = np.bincount(g.category_index[~difficult], minlength=num_cats)
  bounds = np.searchsorted(cats, np.arange(num_cats + 1))
  result = {"per_class": {}, "recall": {}, "precision": {}, "num_positives": {}}
  aps = []
  for k, name in enumerate(g.category_names):
    tp_c = np.cumsum(tp[bounds[k]:bounds[k + 1]]).astype(np.float64)
    fp_c = np.cumsum(fp[bounds[k]:bounds[k + 1]]).astype(np.float64)
    prec = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
    rec = tp_c / max(npos[k], 1)
    ap = average_precision(rec, prec, use_07_metric=use_07_metric) if npos[k] else -1.0
    if npos[k]:
      aps.append(ap)
    result["per_class"][name] = ap
    result["recall"][name], result["precision"][name] = rec, prec
    result["num_positives"][name] = int(npos[k])
  result["mAP"] = float(np.mean(aps)) if aps else -1.0
  return result
