"""Operating-point metrics: precision / recall / F1 at a confidence, the best-F1 confidence and a
confusion matrix.

P/R/F1 reuse the COCO matching of `coco_evaluate` (area "all", the largest ``max_dets``, at one
IoU threshold of its grid): since matching is greedy in score order, keeping the detections with
``score >= c`` gives the same matches as evaluating only those. Detections matched to crowd
regions are ignored, as in COCO.

The confusion matrix follows Ultralytics' semantics (class-agnostic matching, see
`confusion_matrix`).
"""

import numpy as np

from jaxdet.eval.coco_match import pairwise_iou_xywh
from jaxdet.eval.inputs import load_detections, load_ground_truth

DEFAULT_CONFIDENCES = np.linspace(0.0, 1.0, 101)


def _iou_index(result, iou_threshold):
  thr = np.asarray(result["iou_thresholds"])
  hit = np.flatnonzero(np.isclose(thr, iou_threshold, rtol=0, atol=1e-12))
  if not len(hit):
    raise ValueError(f"iou_threshold {iou_threshold} is not one of {thr.round(2).tolist()}")
  return int(hit[0])


def f1_curve(result: dict, *, iou_threshold: float = 0.5, confidences=None) -> dict:
  """Per-class precision, recall and F1 as functions of the confidence threshold.

  Args:
    result: output of `jaxdet.eval.coco_evaluate`.
    iou_threshold: one of the COCO IoU thresholds (0.5, 0.55, ..., 0.95).
    confidences: [C] increasing confidence thresholds (default 0, 0.01, ..., 1); a detection
      counts at threshold c when ``score >= c``.

  Returns:
    dict with ``confidences`` [C], ``precision``, ``recall``, ``f1`` [K, C] float64 (classes
    without ground truth are NaN), ``mean_f1`` [C] (over classes with ground truth),
    ``best_confidence`` (first confidence maximising ``mean_f1``) and ``best_f1``.
  """
  conf = DEFAULT_CONFIDENCES if confidences is None else np.asarray(confidences, np.float64)
  det = result["per_detection"]
  t = _iou_index(result, iou_threshold)
  k_count = len(det["num_gt"])
  keep = ~det["ignored"][t]
  scores, cats, tp = det["scores"][keep], det["category_index"][keep], det["tp"][t][keep]
  # Detection with score s counts for every threshold <= s: histogram then reverse cumsum.
  bin_of = np.searchsorted(conf, scores, side="right") - 1
  inside = bin_of >= 0
  counts = np.zeros((2, k_count, len(conf)))
  np.add.at(counts, (tp[inside].astype(int), cats[inside], bin_of[inside]), 1.0)
  counts = np.cumsum(counts[:, :, ::-1], axis=2)[:, :, ::-1]
  fp, tp_n = counts[0], counts[1]
  num_gt = det["num_gt"].astype(np.float64)[:, None]
  with np.errstate(invalid="ignore", divide="ignore"):
    precision = np.where(tp_n + fp > 0, tp_n / np.maximum(tp_n + fp, 1), 0.0)
    recall = np.where(num_gt > 0, tp_n / num_gt, np.nan)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
  has_gt = det["num_gt"] > 0
  precision[~has_gt] = np.nan
  f1[~has_gt] = np.nan
  mean_f1 = f1[has_gt].mean(axis=0) if has_gt.any() else np.zeros(len(conf))
  best = int(np.argmax(mean_f1))
  return {"confidences": conf, "precision": precision, "recall": recall, "f1": f1,
          "mean_f1": mean_f1, "best_confidence": float(conf[best]),
          "best_f1": float(mean_f1[best])}


def precision_recall_f1(result: dict, *, confidence: float, iou_threshold: float = 0.5) -> dict:
  """Per-class and mean precision / recall / F1 of detections with ``score >= confidence``.

  Args:
    result: output of `jaxdet.eval.coco_evaluate`.
    confidence: score threshold.
    iou_threshold: one of the COCO IoU thresholds.

  Returns:
    dict with ``precision``, ``recall``, ``f1`` [K] float64 (NaN for classes without ground
    truth) and their means over classes with ground truth (``mean_precision``, ``mean_recall``,
    ``mean_f1``).
  """
  curve = f1_curve(result, iou_threshold=iou_threshold, confidences=[confidence])
  out = {k: curve[k][:, 0] for k in ("precision", "recall", "f1")}
  has_gt = result["per_detection"]["num_gt"] > 0
  for k in ("precision", "recall", "f1"):
    out[f"mean_{k}"] = float(out[k][has_gt].mean()) if has_gt.any() else 0.0
  return out


def confusion_matrix(gt, detections, *, iou_threshold: float = 0.45,
                     score_threshold: float = 0.25) -> np.ndarray:
  """Detection confusion matrix with a background class (Ultralytics semantics).

  Per image, detections with ``score > score_threshold`` and non-crowd ground truths of *any*
  class are paired when IoU > ``iou_threshold``; pairs are kept one per detection (its highest
  IoU), then one per ground truth (its highest IoU), ties broken by order. A matched pair counts
  at [predicted class, true class]; an unmatched ground truth at [background, true class] (missed);
  an unmatched detection at [predicted class, background] (false alarm). Crowd ground truths are
  left out.

  Args:
    gt: COCO annotation dict or JSON path.
    detections: list of COCO result dicts, JSON path or arrays (see `coco_evaluate`).
    iou_threshold: IoU a pair needs (strictly greater).
    score_threshold: confidence a detection needs (strictly greater).

  Returns:
    [K + 1, K + 1] int64, rows = predicted class, columns = true class, index K = background;
    classes in sorted category-id order.
  """
  g = load_ground_truth(gt)
  d = load_detections(detections, g)
  k_count = len(g.category_ids)
  gkeep = np.flatnonzero(~g.iscrowd)
  dkeep = np.flatnonzero(d.scores > score_threshold)
  g_img, d_img = g.image_index[gkeep], d.image_index[dkeep]
  g_sort = np.argsort(g_img, kind="stable")
  gkeep, g_img = gkeep[g_sort], g_img[g_sort]
  lo = np.searchsorted(g_img, d_img, side="left")
  count = np.searchsorted(g_img, d_img, side="right") - lo
  pair_d = np.repeat(np.arange(len(dkeep)), count)
  pair_g = np.arange(len(pair_d)) + np.repeat(lo - (np.cumsum(count) - count), count)
  iou = pairwise_iou_xywh(d.boxes_xywh[dkeep][pair_d], g.boxes_xywh[gkeep][pair_g],
                          np.zeros(len(pair_d), bool))
  ok = iou > iou_threshold
  pair_d, pair_g, iou = pair_d[ok], pair_g[ok], iou[ok]
  # Best pair per detection, then best of those per ground truth.
  order = np.argsort(-iou, kind="stable")
  _, first = np.unique(pair_d[order], return_index=True)
  sel = order[first]
  sel = sel[np.argsort(-iou[sel], kind="stable")]
  _, first = np.unique(pair_g[sel], return_index=True)
  sel = sel[first]
  d_cls = d.category_index[dkeep]
  g_cls = g.category_index[gkeep]
  matrix = np.zeros((k_count + 1, k_count + 1), np.int64)
  np.add.at(matrix, (d_cls[pair_d[sel]], g_cls[pair_g[sel]]), 1)
  g_matched = np.zeros(len(gkeep), bool)
  g_matched[pair_g[sel]] = True
  d_matched = np.zeros(len(dkeep), bool)
  d_matched[pair_d[sel]] = True
  np.add.at(matrix, (k_count, g_cls[~g_matched]), 1)
  np.add.at(matrix, (d_cls[~d_matched], k_count), 1)
  return matrix
