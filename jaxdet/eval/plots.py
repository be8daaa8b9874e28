"""Metric plots as PNG files (matplotlib's Agg canvas; no pyplot global state).

With many classes, per-class curves are drawn thin and grey without a legend entry, and only the
mean curve is labelled, so 80 classes stay readable. Text falls back to Noto Sans CJK (the
`noto-cjk-sans-otc` dependency, also used by `jaxdet.data.draw`) for glyphs that matplotlib's
DejaVu Sans lacks, so class names such as `고양이` render without glyph warnings.
"""

import contextlib
import functools

import numpy as np

MAX_LEGEND = 12  # more classes than this: grey curves, mean only in the legend


@functools.lru_cache(maxsize=None)
def _fallback_families() -> tuple[str, ...]:
  """Font families added after matplotlib's default, for glyphs it lacks (CJK)."""
  try:
    import noto_cjk_sans_otc  # pylint: disable=g-import-not-at-top
  except ImportError:
    return ()
  from matplotlib import font_manager  # pylint: disable=g-import-not-at-top
  font_manager.fontManager.addfont(str(noto_cjk_sans_otc.FONT_PATH))
  return ("Noto Sans CJK KR",)


def _cjk_fallback(plot):
  """Runs `plot` (figure creation to savefig: tick labels are made while drawing) with the
  fallback fonts after the default family."""
  @functools.wraps(plot)
  def run(*args, **kwargs):
    import matplotlib  # pylint: disable=g-import-not-at-top
    extra = _fallback_families()
    families = list(matplotlib.rcParams["font.family"])
    rc = {"font.family": families + [f for f in extra if f not in families]} if extra else {}
    with matplotlib.rc_context(rc) if rc else contextlib.nullcontext():
      return plot(*args, **kwargs)
  return run


def new_figure(size, dpi=150):
  """A matplotlib `Figure` on an Agg canvas (no pyplot state, no display needed)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=size, dpi=dpi)
  FigureCanvasAgg(fig)
  return fig


def _class_curves(ax, x, ys, names, values):
  """Per-class curves (skipping NaN rows); coloured with a legend only for few classes."""
  rows = [k for k in range(len(ys)) if not np.isnan(ys[k]).all()]
  few = len(rows) <= MAX_LEGEND
  for k in rows:
    if few:
      ax.plot(x, ys[k], linewidth=1.2, label=f"{names[k]} {values[k]:.3f}")
    else:
      ax.plot(x, ys[k], linewidth=0.6, color="grey", alpha=0.35)
  if not few:
    ax.plot([], [], linewidth=0.6, color="grey", label=f"{len(rows)} classes (one line each)")
  return rows


@_cjk_fallback
def plot_pr_curves(result: dict, path: str, *, iou_threshold: float = 0.5, class_names=None):
  """Precision-recall curves per class and their mean (COCO interpolated, area all, 100 dets).

  Args:
    result: output of `jaxdet.eval.coco_evaluate`.
    path: PNG file to write.
    iou_threshold: one of the COCO IoU thresholds.
    class_names: optional K names (default: the ground truth's category names).
  """
  names = list(class_names or result["category_names"])
  t = int(np.flatnonzero(np.isclose(result["iou_thresholds"], iou_threshold))[0])
  prec = result["precision"][t, :, :, 0, -1].T  # [K, R]
  rec = result["recall_thresholds"]
  prec = np.where(prec < 0, np.nan, prec)
  # Classes without ground truth are all NaN: their AP stays NaN (np.nanmean would warn).
  ap = np.full(len(prec), np.nan)
  has_gt = ~np.isnan(prec).all(axis=1) if prec.size else np.zeros(len(prec), bool)
  ap[has_gt] = np.nanmean(prec[has_gt], axis=1)
  fig = new_figure((7, 6))
  ax = fig.add_subplot()
  rows = _class_curves(ax, rec, prec, names, ap)
  if rows:
    mean = np.nanmean(prec[rows], axis=0)
    ax.plot(rec, mean, linewidth=3, color="black",
            label=f"all classes mAP@{iou_threshold:g} = {np.mean(ap[rows]):.3f}")
  ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.02),
         title=f"Precision-recall curve (IoU {iou_threshold:g}, COCO 101-point)")
  ax.grid(alpha=0.3)
  if rows:
    ax.legend(loc="lower left", fontsize=7, framealpha=0.8, title=f"class, AP@{iou_threshold:g}",
              title_fontsize=7)
  else:
    ax.text(0.5, 0.5, "no class has ground truth", ha="center", transform=ax.transAxes)
  fig.tight_layout()
  fig.savefig(path)


@_cjk_fallback
def plot_f1_curve(curve: dict, path: str, *, class_names):
  """F1 vs confidence per class and mean, marking the best mean-F1 confidence.

  Args:
    curve: output of `jaxdet.eval.f1_curve`.
    path: PNG file to write.
    class_names: K names.
  """
  conf, f1 = curve["confidences"], curve["f1"]
  best_per_class = np.where(np.isnan(f1).all(axis=1), np.nan, np.nanmax(
      np.where(np.isnan(f1), -1, f1), axis=1))
  fig = new_figure((7, 6))
  ax = fig.add_subplot()
  _class_curves(ax, conf, f1, list(class_names), best_per_class)
  ax.plot(conf, curve["mean_f1"], linewidth=3, color="black",
          label=f"all classes: best F1 {curve['best_f1']:.3f} at {curve['best_confidence']:.2f}")
  ax.axvline(curve["best_confidence"], color="tab:red", linestyle="--", linewidth=1)
  ax.set(xlabel="Confidence threshold", ylabel="F1", xlim=(0, 1), ylim=(0, 1.02),
         title="F1 vs confidence (IoU 0.5)")
  ax.grid(alpha=0.3)
  ax.legend(loc="upper left", fontsize=7, framealpha=0.8, title="class, best F1",
            title_fontsize=7)
  fig.tight_layout()
  fig.savefig(path)


@_cjk_fallback
def plot_confusion_matrix(matrix: np.ndarray, path: str, *, class_names, normalize: bool):
  """Confusion matrix image, rows = predicted, columns = true, last = background.

  Args:
    matrix: [K + 1, K + 1] int counts from `jaxdet.eval.confusion_matrix`.
    path: PNG file to write.
    class_names: K names.
    normalize: divide each column by its total (fraction of each true class).
  """
  names = list(class_names) + ["background"]
  n = len(names)
  values = matrix.astype(np.float64)
  if normalize:
    values = values / np.maximum(values.sum(axis=0, keepdims=True), 1)
  side = min(max(6.0, 0.16 * n + 3), 16.0)
  fig = new_figure((side + 1.5, side), dpi=150 if n <= 30 else 110)  # big matrices: smaller PNG
  ax = fig.add_subplot()
  shown = np.where(values > 0, values, np.nan)  # empty cells stay white
  im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
  fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
  font = 8 if n <= 20 else max(4.5, 8 - 0.05 * n)
  ax.set_xticks(range(n), names, rotation=90, fontsize=font)
  ax.set_yticks(range(n), names, fontsize=font)
  if n <= 30:  # numbers in the cells only while they fit
    for i, j in zip(*np.nonzero(values > 0)):
      text = f"{values[i, j]:.2f}" if normalize else str(int(values[i, j]))
      ax.text(j, i, text, ha="center", va="center", fontsize=max(4, font - 1),
              color="white" if values[i, j] > 0.5 * np.nanmax(values) else "black")
  ax.set(xlabel="True class", ylabel="Predicted class",
         title="Confusion matrix" + (" (normalized per true class)" if normalize else " (counts)"))
  fig.tight_layout()
  fig.savefig(path)
