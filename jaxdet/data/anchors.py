"""Anchor sizes from data: k-means on box (w, h) with the 1 - IoU distance (YOLOv2 sec. 2,
"Dimension Clusters"; YOLOv3 uses the same nine clusters at 416 px).

Boxes and anchors are compared as if they shared a corner: ``IoU = min(w) min(h) / union``, so
only shapes and sizes matter. Behind ``jaxdet data anchors``.
"""

import numpy as np

from jaxdet.data import preprocess as preprocess_lib


def wh_iou(wh, anchors):
  """IoU of corner-aligned boxes.

  Args:
    wh: ``[N, 2]`` float (w, h).
    anchors: ``[K, 2]`` float (w, h).

  Returns:
    ``[N, K]`` float64.
  """
  wh, anchors = np.asarray(wh, np.float64), np.asarray(anchors, np.float64)
  inter = (np.minimum(wh[:, None, 0], anchors[None, :, 0])
           * np.minimum(wh[:, None, 1], anchors[None, :, 1]))
  union = np.prod(wh, 1)[:, None] + np.prod(anchors, 1)[None] - inter
  return inter / np.maximum(union, 1e-12)


def _kmeans_pp_init(rng, wh, k):
  """k-means++ seeding with d = 1 - IoU (probability ~ d^2)."""
  centres = [wh[rng.integers(len(wh))]]
  d = 1 - wh_iou(wh, np.array(centres))[:, 0]
  for _ in range(1, k):
    p = d**2
    total = p.sum()
    i = rng.choice(len(wh), p=p / total) if total > 0 else rng.integers(len(wh))
    centres.append(wh[i])
    d = np.minimum(d, 1 - wh_iou(wh, wh[i:i + 1])[:, 0])
  return np.array(centres)


def _lloyd(wh, centres, iters):
  """Assign each box to its highest-IoU centre, move centres to their boxes' mean, repeat."""
  assign = None
  for _ in range(iters):
    iou = wh_iou(wh, centres)
    new_assign = iou.argmax(1)
    if assign is not None and np.array_equal(new_assign, assign):
      break
    assign = new_assign
    centres = centres.copy()
    best = iou.max(1)
    for j in range(len(centres)):
      members = assign == j
      if members.any():
        centres[j] = wh[members].mean(0)
      else:  # an empty cluster restarts at the worst-covered box
        worst = int(best.argmin())
        centres[j], best[worst] = wh[worst], 1.0
  return centres


def kmeans_anchors(wh, *, k, seed=0, iters=300, restarts=3):
  """k anchors (w, h) minimizing the mean 1 - IoU of each box with its nearest anchor.

  k-means++ seeding, then Lloyd iterations with mean updates (darknet's ``calc_anchors``), until
  the assignment stops changing or ``iters``; the best of ``restarts`` runs by mean best IoU.
  Deterministic given ``seed``.

  Args:
    wh: ``[N, 2]`` float32 box widths and heights (pixels), all positive.
    k: number of anchors.
    seed: int seed of the seeding.
    iters: maximum Lloyd iterations per run.
    restarts: independent runs.

  Returns:
    ``(anchors [k, 2] float32 sorted by area (ascending), mean_best_iou float)``: the mean over
    boxes of the IoU with their best anchor.

  Raises:
    ValueError: fewer than k boxes, k < 1, or non-positive / non-finite sizes.
  """
  wh = np.asarray(wh, np.float64).reshape(-1, 2)
  if k < 1:
    raise ValueError(f"the number of anchors must be >= 1, got {k}")
  if len(wh) < k:
    raise ValueError(f"{len(wh)} boxes are too few for {k} anchors (need at least {k})")
  if not np.all(np.isfinite(wh) & (wh > 0)):
    raise ValueError("box widths and heights must be finite and positive")
  rng = np.random.default_rng(seed)
  best = None
  for _ in range(max(int(restarts), 1)):
    centres = _lloyd(wh, _kmeans_pp_init(rng, wh, k), iters)
    score = float(wh_iou(wh, centres).max(1).mean())
    if best is None or score > best[1]:
      best = (centres, score)
  centres, score = best
  order = np.argsort(np.prod(centres, 1), kind="stable")
  return centres[order].astype(np.float32), score


def input_box_wh(gt, image_size, resize="letterbox"):
  """Box (w, h) in network input pixels after the model's resize.

  Args:
    gt: COCO ground-truth dict (``jaxdet.data.ground_truth.coco_ground_truth``); crowd boxes
      are left out.
    image_size: square input side S.
    resize: ``"letterbox"`` (scale S / max(h, w)) or ``"stretch"`` (S / w, S / h).

  Returns:
    ``[N, 2]`` float32 of the boxes with positive size.
  """
  if resize not in preprocess_lib.RESIZE_RULES:
    raise ValueError(f"resize must be one of {preprocess_lib.RESIZE_RULES}, got {resize!r}")
  sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
  out = []
  for a in gt["annotations"]:
    if a["iscrowd"]:
      continue
    w, h = sizes[a["image_id"]]
    sx, sy = (image_size / w, image_size / h) if resize == "stretch" else (
        (image_size / max(w, h),) * 2)
    out.append((a["bbox"][2] * sx, a["bbox"][3] * sy))
  wh = np.asarray(out, np.float32).reshape(-1, 2)
  return wh[np.all(wh > 0, axis=1)]


def config_line(anchors):
  """``--config.model.anchors='((w, h), ...)'``: pixels at one decimal, smallest area first."""
  pairs = ", ".join(f"({_num(w)}, {_num(h)})" for w, h in np.asarray(anchors, np.float64))
  return f"--config.model.anchors='({pairs}{',' if len(anchors) == 1 else ''})'"


def _num(v):
  v = max(round(float(v), 1), 0.1)
  return str(int(v)) if v == int(v) else f"{v:.1f}"
