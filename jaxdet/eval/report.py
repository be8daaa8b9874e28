"""The evaluation report the trainer writes after each periodic evaluation: stats JSON, a text
table and the plots."""

import json
import os
import unicodedata

import numpy as np

from jaxdet.eval import plots
from jaxdet.eval.coco import STAT_NAMES, coco_evaluate
from jaxdet.eval.inputs import load_detections, load_ground_truth
from jaxdet.eval.thresholds import confusion_matrix, f1_curve

_DESCRIPTIONS = {
    "AP": "AP @[IoU=0.50:0.95 | area=   all | maxDets=100]",
    "AP50": "AP @[IoU=0.50      | area=   all | maxDets=100]",
    "AP75": "AP @[IoU=0.75      | area=   all | maxDets=100]",
    "APs": "AP @[IoU=0.50:0.95 | area= small | maxDets=100]",
    "APm": "AP @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "APl": "AP @[IoU=0.50:0.95 | area= large | maxDets=100]",
    "AR1": "AR @[IoU=0.50:0.95 | area=   all | maxDets=  1]",
    "AR10": "AR @[IoU=0.50:0.95 | area=   all | maxDets= 10]",
    "AR100": "AR @[IoU=0.50:0.95 | area=   all | maxDets=100]",
    "ARs": "AR @[IoU=0.50:0.95 | area= small | maxDets=100]",
    "ARm": "AR @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "ARl": "AR @[IoU=0.50:0.95 | area= large | maxDets=100]",
}


def display_width(text: str) -> int:
  """Terminal columns of `text`: wide (CJK) characters take two, so `고양이` is 6 wide."""
  return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, width: int, *, right: bool = False) -> str:
  """`text` padded with spaces to `width` terminal columns (`str.ljust` counts characters)."""
  fill = " " * max(0, width - display_width(text))
  return fill + text if right else text + fill


def _names(result, class_names):
  if class_names is None:
    return list(result["category_names"])
  if isinstance(class_names, dict):
    return [str(class_names.get(int(c), c)) for c in result["category_ids"]]
  if len(class_names) != len(result["category_ids"]):
    raise ValueError(f"class_names has {len(class_names)} names for "
                     f"{len(result['category_ids'])} categories")
  return [str(n) for n in class_names]


def format_table(result: dict, class_names=None) -> str:
  """The 12 COCO stats, then AP / AP50 per class, as aligned text.

  Args:
    result: output of `jaxdet.eval.coco_evaluate`.
    class_names: optional K names (sequence in category-id order, or dict id -> name).

  Returns:
    str table (``-1`` marks undefined values, e.g. a class without ground truth).
  """
  names = _names(result, class_names)
  lines = [f"{'metric':<6} {'description':<47} {'value':>7}"]
  lines += [f"{k:<6} {_DESCRIPTIONS[k]:<47} {result[k]:>7.4f}" for k in STAT_NAMES]
  prec = result["precision"][:, :, :, 0, -1]  # [T, R, K]
  width = max([5] + [display_width(n) for n in names])
  lines += ["", f"{'id':>5}  {'class':<{width}}  {'AP':>7}  {'AP50':>7}"]
  for k, name in enumerate(names):
    ap = prec[:, :, k][prec[:, :, k] > -1]
    ap50 = prec[0, :, k][prec[0, :, k] > -1]
    ap_s = f"{ap.mean():7.4f}" if ap.size else f"{-1:7d}"
    ap50_s = f"{ap50.mean():7.4f}" if ap50.size else f"{-1:7d}"
    lines.append(f"{int(result['category_ids'][k]):>5}  {pad(name, width)}  {ap_s}  {ap50_s}")
  return "\n".join(lines)


def stats_dict(result: dict, class_names=None) -> dict:
  """JSON-friendly summary: the 12 stats and per-class AP keyed by class name."""
  names = _names(result, class_names)
  per_class = list(result["per_class"].values())
  return {**{k: float(result[k]) for k in STAT_NAMES},
          "per_class": {n: float(v) for n, v in zip(names, per_class)}}


def write_report(gt, detections, out_dir: str, *, class_names=None, result=None) -> dict:
  """Runs `coco_evaluate` and writes the full report into ``out_dir``.

  Files: ``coco_stats.json`` (12 stats, per-class AP, best-F1 confidence), ``coco_table.txt``,
  ``pr_curve.png`` (IoU 0.5), ``f1_curve.png`` (IoU 0.5), ``confusion_matrix.png`` and
  ``confusion_matrix_normalized.png`` (+ ``.npy``; IoU > 0.45, score > 0.25, the Ultralytics
  defaults).

  Args:
    gt: COCO annotation dict or JSON path.
    detections: list of COCO result dicts, JSON path or arrays (see `coco_evaluate`).
    out_dir: directory (created if needed).
    class_names: optional K names (category-id order, or dict id -> name).
    result: `coco_evaluate` of the same inputs, if already computed.

  Returns:
    dict: the 12 stats, ``per_class`` AP, ``best_confidence`` and ``best_f1`` (IoU 0.5).
  """
  os.makedirs(out_dir, exist_ok=True)
  g = load_ground_truth(gt)
  d = load_detections(detections, g)
  result = coco_evaluate(g, d) if result is None else result
  names = _names(result, class_names)
  curve = f1_curve(result)
  stats = stats_dict(result, names)
  stats.update(best_confidence=curve["best_confidence"], best_f1=curve["best_f1"])
  with open(os.path.join(out_dir, "coco_stats.json"), "w") as f:
    json.dump(stats, f, indent=1)
  with open(os.path.join(out_dir, "coco_table.txt"), "w") as f:
    f.write(format_table(result, names) + "\n")
  plots.plot_pr_curves(result, os.path.join(out_dir, "pr_curve.png"), class_names=names)
  plots.plot_f1_curve(curve, os.path.join(out_dir, "f1_curve.png"), class_names=names)
  matrix = confusion_matrix(g, d)
  for normalize, name in ((False, "confusion_matrix.png"),
                          (True, "confusion_matrix_normalized.png")):
    plots.plot_confusion_matrix(matrix, os.path.join(out_dir, name), class_names=names,
                                normalize=normalize)
  np.save(os.path.join(out_dir, "confusion_matrix.npy"), matrix)
  return stats
