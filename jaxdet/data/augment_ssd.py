"""SSD's geometric augmentation: zoom-out onto a filled canvas, then the IoU-constrained crop.

Semantics of the SSD paper (Liu et al. 2016, sec. 2.2 "Data augmentation") as torchvision's
detection reference implements them (``RandomZoomOut``, ``RandomIoUCrop``):

- zoom-out, with probability ``cfg.zoom_out``: the image is placed at a random integer offset on
  a canvas ``r`` times its size (``r`` uniform in ``cfg.zoom_out_range``, sides truncated to
  ints), filled with ``cfg.fill``;
- IoU crop, with probability ``cfg.iou_crop``: draw a minimum IoU from ``cfg.iou_crop_min_ious``
  (``>= 1`` means "keep the whole image"); try ``TRIALS`` windows with sides in
  ``cfg.iou_crop_scale`` of the image's, aspect in ``cfg.iou_crop_aspect``, integer corners; a
  window is accepted when some box centre lies strictly inside it and the best IoU of those boxes
  with the window reaches the minimum; otherwise draw another minimum. Boxes whose centre is
  inside are kept and clipped to the window; the others are dropped.

Both are integer windows of the same virtual canvas, so the crop of the zoomed image is rendered
directly (a fill-coloured crop-sized array with the image's overlapping part pasted in): the 4x
canvas is never materialized, and the pixels are exactly torchvision's ``crop(pad(image))``.
The caller resizes the result to the network input (``augment.scale_jitter``).
"""

import numpy as np

from jaxdet.data.masks import IGNORE

TRIALS = 40  # windows tried per drawn minimum IoU (torchvision, the Caffe SSD)
MAX_ROUNDS = 100  # torchvision loops until it succeeds; P(no "keep" in 100 draws of 7) ~ 2e-7


def filled(h, w, fill):
  """uint8 ``[h, w, 3]`` of one colour (``fill``: an int or an (r, g, b) triple).

  Writes whole rows: NumPy's broadcast of a 3-vector over ``[h, w, 3]`` is ~40x slower.
  """
  out = np.empty((h, w, 3), np.uint8)
  out.reshape(h, w * 3)[:] = np.tile(np.broadcast_to(np.asarray(fill, np.uint8), (3,)), w)
  return out


def _zoom_out(rng, h, w, cfg):
  """``(canvas_h, canvas_w, left, top)`` of the zoom-out canvas (the identity when skipped)."""
  if not (cfg.zoom_out > 0 and rng.uniform() < cfg.zoom_out):
    return h, w, 0, 0
  lo, hi = cfg.zoom_out_range
  r = lo + rng.uniform() * (hi - lo)
  ch, cw = int(h * r), int(w * r)
  fx, fy = rng.uniform(size=2)
  return ch, cw, int((cw - w) * fx), int((ch - h) * fy)


def _window_iou(boxes, windows):
  """IoU ``[T, n]`` of boxes ``[n, 4]`` with windows ``[T, 4]`` (xyxy)."""
  lt = np.maximum(boxes[None, :, :2], windows[:, None, :2])
  rb = np.minimum(boxes[None, :, 2:], windows[:, None, 2:])
  inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
  area_b = np.prod(boxes[:, 2:] - boxes[:, :2], axis=-1)
  area_w = np.prod(windows[:, 2:] - windows[:, :2], axis=-1)
  return inter / np.maximum(area_b[None] + area_w[:, None] - inter, 1e-9)


def iou_crop_window(rng, boxes, h, w, cfg):
  """The IoU-constrained crop of an ``h x w`` image (SSD), or None to keep the whole image.

  Args:
    rng: ``np.random.Generator``.
    boxes: float32 ``[n, 4]`` xyxy pixels.
    h, w: image size.
    cfg: ``AugmentConfig`` (``iou_crop_min_ious``, ``iou_crop_scale``, ``iou_crop_aspect``).

  Returns:
    None, or ``((left, top, right, bottom) ints, keep [n] bool)``: the window and the boxes whose
    centre lies strictly inside it.
  """
  if len(boxes) == 0:  # torchvision redraws until "keep the whole image": the same outcome
    return None
  options = np.asarray(cfg.iou_crop_min_ious, np.float64)
  (s_lo, s_hi), (a_lo, a_hi) = cfg.iou_crop_scale, cfg.iou_crop_aspect
  centres = (boxes[:, :2] + boxes[:, 2:]) / 2
  for _ in range(MAX_ROUNDS):
    min_iou = options[rng.integers(len(options))]
    if min_iou >= 1.0:
      return None
    # The trials are independent draws, so drawing all at once and taking the first acceptable
    # window has torchvision's distribution.
    scale = s_lo + (s_hi - s_lo) * rng.uniform(size=(TRIALS, 2))
    new_w, new_h = (w * scale[:, 0]).astype(np.int64), (h * scale[:, 1]).astype(np.int64)
    frac = rng.uniform(size=(TRIALS, 2))
    left = ((w - new_w) * frac[:, 0]).astype(np.int64)
    top = ((h - new_h) * frac[:, 1]).astype(np.int64)
    windows = np.stack([left, top, left + new_w, top + new_h], axis=1)
    aspect = new_w / np.maximum(new_h, 1)
    ok = (new_w > 0) & (new_h > 0) & (aspect >= a_lo) & (aspect <= a_hi)
    inside = np.all((centres[None] > windows[:, None, :2]) & (centres[None] < windows[:, None, 2:]),
                    axis=-1)  # [T, n]
    iou = np.where(inside, _window_iou(boxes, windows.astype(np.float32)), -1.0)
    ok &= inside.any(1) & (iou.max(1, initial=-1.0) >= min_iou)
    if ok.any():
      t = int(np.argmax(ok))
      return tuple(int(v) for v in windows[t]), inside[t]
  return None


def zoom_out_and_crop(rng, example, cfg):
  """SSD zoom-out then IoU crop of one example, at the original resolution.

  Args:
    rng: ``np.random.Generator``.
    example: dict ``image`` uint8 ``[H, W, 3]``, ``boxes`` float32 ``[n, 4]`` xyxy pixels,
      ``classes`` int32 ``[n]``, optionally ``mask`` uint8 ``[H, W]`` (moved with the pixels,
      255 where the window leaves the image).
    cfg: ``AugmentConfig`` (``zoom_out``, ``zoom_out_range``, ``iou_crop``, ``iou_crop_*``,
      ``fill``).

  Returns:
    the example with ``image`` uint8 ``[h', w', 3]`` (the crop of the zoomed canvas),
    ``boxes`` ``[n', 4]`` in its pixels (clipped to it) and ``classes`` ``[n']``.
  """
  image, boxes, classes = example["image"], example["boxes"], example["classes"]
  h, w = image.shape[:2]
  ch, cw, zl, zt = _zoom_out(rng, h, w, cfg)
  boxes = boxes + np.array([zl, zt, zl, zt], np.float32)
  window = None
  if cfg.iou_crop > 0 and rng.uniform() < cfg.iou_crop:
    window = iou_crop_window(rng, boxes, ch, cw, cfg)
  if window is None:
    if (ch, cw) == (h, w):
      return example  # no zoom-out, no crop
    (cl, ct, cr, cb), keep = (0, 0, cw, ch), np.ones(len(boxes), bool)
  else:
    (cl, ct, cr, cb), keep = window
  out = filled(cb - ct, cr - cl, cfg.fill)
  # The image occupies [zl, zl + w) x [zt, zt + h) of the canvas; paste its part in the window.
  x0, y0, x1, y1 = max(cl, zl), max(ct, zt), min(cr, zl + w), min(cb, zt + h)
  if x1 > x0 and y1 > y0:
    out[y0 - ct:y1 - ct, x0 - cl:x1 - cl] = image[y0 - zt:y1 - zt, x0 - zl:x1 - zl]
  kept = np.clip(boxes[keep] - np.array([cl, ct, cl, ct], np.float32), 0,
                 np.array([cr - cl, cb - ct] * 2, np.float32))
  result = dict(example, image=out, boxes=kept.reshape(-1, 4).astype(np.float32),
                classes=classes[keep])
  mask = example.get("mask")
  if mask is not None:  # the same window; outside the image is ignore (255)
    out_mask = np.full((cb - ct, cr - cl), IGNORE, np.uint8)
    if x1 > x0 and y1 > y0:
      out_mask[y0 - ct:y1 - ct, x0 - cl:x1 - cl] = mask[y0 - zt:y1 - zt, x0 - zl:x1 - zl]
    result["mask"] = out_mask
  return result
