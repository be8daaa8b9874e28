"""`workdir/curves.png`: training losses, learning rate and validation AP over steps.

Drawn from `metrics.jsonl` after each evaluation, so a run can be followed without TensorBoard.
"""

import pathlib

import numpy as np

from jaxdet.train import logging as log_lib

_EVAL_KEYS = ("AP", "AP50", "AP75", "mean_iou", "pixel_accuracy")


def _series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
  """`(steps [n], values [n])` of the records that carry a finite `key`."""
  pairs = [(r["step"], r[key]) for r in records if r.get(key) is not None]
  if not pairs:
    return np.zeros(0), np.zeros(0)
  steps, values = np.asarray(pairs, np.float64).T
  return steps, values


def write_curves_png(workdir: str | pathlib.Path, path: str | pathlib.Path | None = None) -> bool:
  """Plots `workdir/metrics.jsonl` into `path` (default `workdir/curves.png`).

  Three panels sharing the step axis: every train `*loss`, the learning rate (log scale), and
  the eval AP / AP50 / AP75. Panels without data say so.

  Returns:
    True when a PNG was written (False: no records yet).
  """
  from jaxdet.eval.plots import new_figure  # matplotlib only when plotting
  workdir = pathlib.Path(workdir)
  records = log_lib.read_metrics(workdir)
  if not records:
    return False
  train = [r for r in records if r.get("split") == "train"]
  evals = [r for r in records if r.get("split") == "eval"]
  loss_keys = sorted({k for r in train for k in r if k.endswith("loss")},
                     key=lambda k: (k != "loss", k))
  fig = new_figure((7, 9), dpi=100)
  ax_loss, ax_lr, ax_ap = fig.subplots(3, 1, sharex=True)
  for key in loss_keys:
    steps, values = _series(train, key)
    ax_loss.plot(steps, values, linewidth=2 if key == "loss" else 1, label=key)
  ax_loss.set(ylabel="loss", title="training curves")
  steps, values = _series(train, "lr")
  if len(steps):
    ax_lr.plot(steps, values, color="tab:purple")
    if np.all(values > 0):
      ax_lr.set_yscale("log")
  ax_lr.set(ylabel="learning rate")
  for key in _EVAL_KEYS:
    steps, values = _series(evals, key)
    if len(steps):
      ax_ap.plot(steps, values, marker="o", label=key)
  ax_ap.set(ylabel="validation AP / mIoU", xlabel="step")
  for ax, has_data in ((ax_loss, loss_keys), (ax_lr, len(_series(train, "lr")[0])),
                       (ax_ap, evals)):
    ax.grid(alpha=0.3)
    if not has_data:
      ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)
    elif ax is not ax_lr:
      ax.legend(fontsize=8)
  fig.tight_layout()
  path = workdir / "curves.png" if path is None else pathlib.Path(path)
  tmp = path.with_name(path.name + ".tmp.png")
  fig.savefig(tmp)
  tmp.replace(path)  # A viewer never sees a half-written PNG.
  return True
