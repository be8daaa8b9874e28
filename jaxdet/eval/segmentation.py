"""Semantic segmentation metrics (pure NumPy): one confusion matrix accumulated over a dataset in
one pass, and the classic scores derived from it (FCN paper, Long et al. 2015, section 5).

Mask convention (DESIGN.md): int class ids per pixel, 0 = background, k + 1 = detection label k,
255 = ignore. A model with C detection classes has K = C + 1 segmentation classes.

With ``n_ij`` the pixels of target class i predicted as j, ``t_i = sum_j n_ij`` (target pixels of
class i) and ``p_j = sum_i n_ij`` (predicted pixels of class j):

- pixel accuracy ``sum_i n_ii / sum_i t_i``;
- mean (class) accuracy ``mean_i n_ii / t_i`` over the classes present in the targets;
- IoU of class i ``n_ii / (t_i + p_i - n_ii)`` (NaN when the class is in neither targets nor
  predictions); mean IoU is the mean over the non-NaN classes (a class that is only predicted
  counts with IoU 0);
- frequency-weighted IoU ``sum_i t_i * IoU_i / sum_i t_i``.

A score with nothing to average (no labelled pixel) is NaN.
"""

import json
import math
import os

import numpy as np

IGNORE_INDEX = 255
METRICS_FILE = "segmentation_metrics.json"


def _masks(name, masks):
  a = np.asarray(masks)
  if not np.issubdtype(a.dtype, np.integer):
    raise ValueError(f"{name} must hold integer class ids, got dtype {a.dtype}")
  return a


def confusion_matrix(pred_masks, target_masks, *, num_classes, ignore_index=IGNORE_INDEX):
  """Confusion matrix of one batch of masks.

  Args:
    pred_masks: ``[N, H, W]`` (any shape) int predicted class ids in ``[0, K)``.
    target_masks: int target class ids, same shape; pixels equal to ``ignore_index`` and targets
      outside ``[0, K)`` are skipped.
    num_classes: ``K`` (background included).
    ignore_index: target value of pixels that do not count (None: none).

  Returns:
    ``[K, K]`` int64 counts, rows = target class, columns = predicted class.

  Raises:
    ValueError: shapes differ, non-integer masks, ``num_classes < 1`` or a counted pixel's
      prediction outside ``[0, K)``.
  """
  k = int(num_classes)
  if k < 1:
    raise ValueError(f"num_classes must be >= 1, got {num_classes}")
  pred, target = _masks("pred_masks", pred_masks), _masks("target_masks", target_masks)
  if pred.shape != target.shape:
    raise ValueError(f"pred_masks {pred.shape} and target_masks {target.shape} must have the "
                     f"same shape")
  valid = (target >= 0) & (target < k)
  if ignore_index is not None:
    valid &= target != ignore_index
  p, t = pred[valid].astype(np.int64), target[valid].astype(np.int64)
  bad = (p < 0) | (p >= k)
  if bad.any():
    raise ValueError(f"pred_masks has class id {int(p[bad][0])} outside [0, {k}) "
                     f"(num_classes={k})")
  return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def update_confusion(confusion, pred_masks, target_masks, *, ignore_index=IGNORE_INDEX):
  """Adds one batch to a running confusion matrix (``K`` from its shape).

  Args:
    confusion: ``[K, K]`` int64 running counts (start from ``np.zeros((K, K), np.int64)``).
    pred_masks, target_masks: ``[N, H, W]`` int, as ``confusion_matrix``.
    ignore_index: as ``confusion_matrix``.

  Returns:
    ``[K, K]`` int64, a new array: ``confusion + confusion_matrix(batch)``.
  """
  confusion = np.asarray(confusion, np.int64)
  if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
    raise ValueError(f"confusion must be [K, K], got shape {confusion.shape}")
  return confusion + confusion_matrix(pred_masks, target_masks, num_classes=len(confusion),
                                      ignore_index=ignore_index)


def accumulate_confusion(batches, *, num_classes, ignore_index=IGNORE_INDEX):
  """Confusion matrix over a whole dataset in one pass.

  Args:
    batches: iterable of ``(pred_masks [B, H, W], target_masks [B, H, W])`` int pairs, or of
      dicts with ``pred`` and ``mask`` (and optionally ``example_mask`` [B] bool, as the input
      pipeline's padded last batch: rows with False are skipped).
    num_classes: ``K``.
    ignore_index: as ``confusion_matrix``.

  Returns:
    ``[K, K]`` int64.
  """
  total = np.zeros((int(num_classes),) * 2, np.int64)
  for batch in batches:
    if isinstance(batch, dict):
      pred, target = np.asarray(batch["pred"]), np.asarray(batch["mask"])
      if "example_mask" in batch:
        keep = np.asarray(batch["example_mask"], bool)
        pred, target = pred[keep], target[keep]
    else:
      pred, target = batch
    total = update_confusion(total, pred, target, ignore_index=ignore_index)
  return total


def _ratio(num, den):
  """``num / den`` elementwise, NaN where ``den == 0`` (no warning)."""
  num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
  return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


def _nanmean(x):
  x = np.asarray(x, np.float64)
  x = x[~np.isnan(x)]
  return float(x.mean()) if x.size else math.nan


def default_class_names(num_classes):
  """``("background", "1", ..., "C")``: names when none are given (class 0 is background)."""
  return ("background",) + tuple(str(k) for k in range(1, int(num_classes)))


def segmentation_metrics(confusion, class_names=None):
  """Scores of a confusion matrix (see the module docstring for the formulas).

  Args:
    confusion: ``[K, K]`` int counts, rows = target, columns = prediction.
    class_names: optional ``K`` names (default ``default_class_names(K)``).

  Returns:
    dict: ``pixel_accuracy``, ``mean_accuracy``, ``mean_iou``, ``fw_iou`` (floats, NaN when
    undefined), ``per_class_iou`` and ``per_class_accuracy`` (dict name -> float, NaN for a
    class absent from both targets and predictions / from the targets), ``class_names`` (list),
    ``num_pixels`` (int, labelled pixels counted) and ``confusion`` (list of lists of int).

  Raises:
    ValueError: ``confusion`` not square, or ``class_names`` of another length.
  """
  cm = np.asarray(confusion)
  if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
    raise ValueError(f"confusion must be [K, K], got shape {cm.shape}")
  k = len(cm)
  names = list(default_class_names(k) if class_names is None else class_names)
  if len(names) != k:
    raise ValueError(f"class_names has {len(names)} names for a {k}x{k} confusion matrix")
  cm = cm.astype(np.float64)
  diag, target, pred = np.diag(cm), cm.sum(1), cm.sum(0)
  total = target.sum()
  iou = _ratio(diag, target + pred - diag)
  acc = _ratio(diag, target)
  fw = float(np.sum(target[target > 0] * iou[target > 0]) / total) if total > 0 else math.nan
  return {
      "pixel_accuracy": float(diag.sum() / total) if total > 0 else math.nan,
      "mean_accuracy": _nanmean(acc),
      "mean_iou": _nanmean(iou),
      "fw_iou": fw,
      "per_class_iou": {str(n): float(v) for n, v in zip(names, iou)},
      "per_class_accuracy": {str(n): float(v) for n, v in zip(names, acc)},
      "class_names": [str(n) for n in names],
      "num_pixels": int(total),
      "confusion": np.asarray(confusion, np.int64).tolist(),
  }


def _fmt(value):
  return "   nan" if value is None or math.isnan(value) else f"{value:6.4f}"


def report_segmentation(metrics, class_names=None):
  """Aligned text table of ``segmentation_metrics``: the four scores, then IoU and accuracy per
  class.

  Args:
    metrics: dict from ``segmentation_metrics``.
    class_names: optional names overriding ``metrics["class_names"]`` (same length).

  Returns:
    str (no trailing newline).
  """
  from jaxdet.eval.report import pad  # pylint: disable=g-import-not-at-top  (CJK widths)
  names = list(metrics["class_names"] if class_names is None else class_names)
  iou, acc = list(metrics["per_class_iou"].values()), list(metrics["per_class_accuracy"].values())
  if len(names) != len(iou):
    raise ValueError(f"class_names has {len(names)} names for {len(iou)} classes")
  lines = [f"pixel accuracy {_fmt(metrics['pixel_accuracy'])}   mean accuracy "
           f"{_fmt(metrics['mean_accuracy'])}   mean IoU {_fmt(metrics['mean_iou'])}   "
           f"fw IoU {_fmt(metrics['fw_iou'])}   ({metrics.get('num_pixels', 0)} pixels)"]
  width = max([len("class")] + [len(str(n)) + 2 for n in names])
  lines.append(f"{pad('class', width)}    IoU  accuracy")
  for name, i, a in zip(names, iou, acc):
    lines.append(f"{pad(str(name), width)} {_fmt(i)}    {_fmt(a)}")
  return "\n".join(lines)


def _json_safe(value):
  if isinstance(value, float) and math.isnan(value):
    return None
  if isinstance(value, dict):
    return {k: _json_safe(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_json_safe(v) for v in value]
  return value


def write_segmentation_report(confusion, out_dir, *, class_names=None, images=None,
                              pred_masks=None, target_masks=None):
  """What an evaluation writes: ``segmentation_metrics.json`` (NaN as null),
  ``segmentation_table.txt``, ``confusion_matrix.png`` and, with images, ``masks.png``.

  Args:
    confusion: ``[K, K]`` int counts (``accumulate_confusion``).
    out_dir: folder to write into (created).
    class_names: optional ``K`` names (class 0 = background).
    images: optional uint8 ``[N, H, W, 3]`` images for ``masks.png`` ...
    pred_masks: ... their int ``[N, H, W]`` predictions ...
    target_masks: ... and int ``[N, H, W]`` targets.

  Returns:
    the ``segmentation_metrics`` dict.
  """
  from jaxdet.eval import segmentation_plots  # pylint: disable=g-import-not-at-top
  metrics = segmentation_metrics(confusion, class_names)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, METRICS_FILE), "w") as f:
    json.dump(_json_safe(metrics), f, indent=1, ensure_ascii=False)
  with open(os.path.join(out_dir, "segmentation_table.txt"), "w") as f:
    f.write(report_segmentation(metrics) + "\n")
  segmentation_plots.plot_confusion_matrix(confusion, metrics["class_names"],
                                           os.path.join(out_dir, "confusion_matrix.png"))
  if images is not None:
    segmentation_plots.plot_masks(images, pred_masks, target_masks,
                                  os.path.join(out_dir, "masks.png"))
  return metrics


def plot_confusion_matrix(confusion, class_names, path, **kwargs):
  """See ``jaxdet.eval.segmentation_plots.plot_confusion_matrix``."""
  from jaxdet.eval import segmentation_plots  # pylint: disable=g-import-not-at-top
  return segmentation_plots.plot_confusion_matrix(confusion, class_names, path, **kwargs)


def plot_masks(images, pred, target, path, **kwargs):
  """See ``jaxdet.eval.segmentation_plots.plot_masks``."""
  from jaxdet.eval import segmentation_plots  # pylint: disable=g-import-not-at-top
  return segmentation_plots.plot_masks(images, pred, target, path, **kwargs)


def _same_size_groups(examples, batch_size):
  """Consecutive examples of one image size, at most ``batch_size`` per group."""
  group = []
  for ex in examples:
    if group and (len(group) == batch_size or group[0]["image"].shape != ex["image"].shape):
      yield group
      group = []
    group.append(ex)
  if group:
    yield group


def evaluate_predictions(predict, examples, *, num_classes, batch_size=8,
                         ignore_index=IGNORE_INDEX, keep=0):
  """Confusion matrix of a predictor over examples at their original resolution, in one pass.

  Args:
    predict: ``predict(images uint8 [N, H, W, 3]) -> {"masks": int [N, H, W]}`` (as
      ``jaxdet.load(DIR).predict`` of a segmentation model) or a function returning the masks.
    examples: iterable of dicts with ``image`` uint8 ``[H, W, 3]`` and ``mask`` int ``[H, W]``
      (``jaxdet.data.ground_truth.mask_examples``); consecutive same-size images are batched.
    num_classes: ``K`` (background included).
    batch_size: images per ``predict`` call at most.
    ignore_index: target value that does not count.
    keep: also return the first ``keep`` ``(image, pred, target)`` triples (for ``plot_masks``).

  Returns:
    ``(confusion [K, K] int64, kept list of (image, pred, target))``.
  """
  total = np.zeros((int(num_classes),) * 2, np.int64)
  kept = []
  for group in _same_size_groups(examples, int(batch_size)):
    images = np.stack([ex["image"] for ex in group])
    targets = np.stack([np.asarray(ex["mask"]) for ex in group])
    out = predict(images)
    pred = np.asarray(out["masks"] if isinstance(out, dict) else out)
    if pred.shape != targets.shape:
      raise ValueError(f"predict returned masks of shape {pred.shape} for images "
                       f"{images.shape}; expected {targets.shape} (the input resolution)")
    total = update_confusion(total, pred, targets, ignore_index=ignore_index)
    for i in range(len(group)):
      if len(kept) < keep:
        kept.append((images[i], pred[i], targets[i]))
  return total, kept
