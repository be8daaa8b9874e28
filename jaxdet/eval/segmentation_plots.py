"""Segmentation plots as PNG files (matplotlib's Agg canvas, as ``jaxdet.eval.plots``): the
``[K, K]`` confusion matrix (rows = target, columns = prediction) and predicted masks next to the
ground truth."""

import numpy as np

from jaxdet.eval import plots


@plots._cjk_fallback  # pylint: disable=protected-access  (the same CJK font fallback)
def plot_confusion_matrix(confusion, class_names, path, *, normalize=True):
  """Segmentation confusion matrix image.

  Args:
    confusion: ``[K, K]`` int pixel counts, rows = target class, columns = predicted class
      (``jaxdet.eval.segmentation.confusion_matrix``).
    class_names: ``K`` names (class 0 = background).
    path: PNG file to write.
    normalize: divide each row by its total (the fraction of each target class's pixels).
  """
  names = [str(n) for n in class_names]
  cm = np.asarray(confusion, np.float64)
  n = len(names)
  if cm.shape != (n, n):
    raise ValueError(f"confusion {cm.shape} does not match {n} class names")
  values = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
  side = min(max(6.0, 0.16 * n + 3), 16.0)
  fig = plots.new_figure((side + 1.5, side), dpi=150 if n <= 30 else 110)
  ax = fig.add_subplot()
  im = ax.imshow(np.where(values > 0, values, np.nan), cmap="Blues", vmin=0,
                 vmax=1 if normalize else None)
  fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
  font = 8 if n <= 20 else max(4.5, 8 - 0.05 * n)
  ax.set_xticks(range(n), names, rotation=90, fontsize=font)
  ax.set_yticks(range(n), names, fontsize=font)
  if n <= 30:  # numbers in the cells only while they fit
    top = np.nanmax(values) if values.size else 0
    for i, j in zip(*np.nonzero(values > 0)):
      text = f"{values[i, j]:.2f}" if normalize else str(int(values[i, j]))
      ax.text(j, i, text, ha="center", va="center", fontsize=max(4, font - 1),
              color="white" if values[i, j] > 0.5 * top else "black")
  ax.set(xlabel="Predicted class", ylabel="True class",
         title="Pixel confusion matrix" + (" (normalized per true class)" if normalize
                                           else " (counts)"))
  fig.tight_layout()
  fig.savefig(path)


def plot_masks(images, pred, target, path, *, alpha=0.6, max_rows=8):
  """One row per image: the image, the ground truth and the prediction (colour overlays, VOC
  palette; white = ignore).

  Args:
    images: uint8 ``[N, H, W, 3]``.
    pred: int ``[N, H, W]`` predicted class ids.
    target: int ``[N, H, W]`` target class ids (255 = ignore).
    path: PNG file to write.
    alpha: weight of the mask colours.
    max_rows: draw at most this many images.
  """
  from jaxdet.data import draw  # pylint: disable=g-import-not-at-top
  images, pred, target = np.asarray(images), np.asarray(pred), np.asarray(target)
  if images.ndim != 4 or pred.shape != images.shape[:3] or target.shape != images.shape[:3]:
    raise ValueError(f"plot_masks needs images [N, H, W, 3] with pred and target [N, H, W], got "
                     f"{images.shape}, {pred.shape} and {target.shape}")
  n = min(len(images), max_rows)
  if n == 0:
    raise ValueError("plot_masks needs at least one image")
  h, w = images.shape[1:3]
  cell = 2.6
  fig = plots.new_figure((3 * cell, n * cell * h / w + 0.4), dpi=100)
  for i in range(n):
    panels = (images[i], draw.overlay_mask(images[i], target[i], alpha),
              draw.overlay_mask(images[i], pred[i], alpha))
    for j, (panel, title) in enumerate(zip(panels, ("image", "ground truth", "prediction"))):
      ax = fig.add_subplot(n, 3, 3 * i + j + 1)
      ax.imshow(panel)
      ax.set_axis_off()
      if i == 0:
        ax.set_title(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path)
