"""Box-aware augmentation in NumPy + PIL, deterministic given a ``np.random.Generator``.

An *example* here is a dict ``image`` uint8 ``[H, W, 3]``, ``boxes`` float32 ``[n, 4]`` xyxy in
pixels of that image, ``classes`` int32 ``[n]``. Every geometric op maps pixel edges exactly
(``x_out = x_in * sx + ox``; PIL resamples the source window that lands on the canvas), so the
boxes move with the pixels; boxes are clipped to what stays visible and dropped when less than
``min_visible`` of their area (or a side under ``min_size`` px) remains.

Ops: horizontal flip, scale jitter with random crop/pad (letterbox or plain resize), photometric
jitter (one 3x3 colour matrix: brightness, contrast, saturation, hue, channel swap), mosaic,
mixup, CutMix, and SSD's zoom-out and IoU-constrained crop (``augment_ssd``).

An example may also hold ``mask`` uint8 ``[H, W]`` (semantic class ids, 255 = ignore): every
geometric op moves it with the pixels (the same source window, nearest neighbour; padding 255).
Mixup keeps the mask of the image with the larger weight; CutMix pastes the mask with the patch.

An example may hold ``proposals`` float32 ``[p, 4]`` xyxy (external RoIs of a Fast R-CNN): the
flip and the scale jitter move and clip them like boxes but never drop a row; the multi-image
and SSD ops do not carry them (``PROPOSAL_UNSAFE_OPS``, refused by the input pipeline).

Presets (``config.augment``): ``none``, ``default``, ``full`` (mosaic 0.5, mixup, CutMix),
``ssd`` (the SSD paper's recipe: photometric distortion, zoom-out up to 4x onto the mean colour,
IoU crop, flip; ``SSD_AUGMENT``) and ``mosaic`` (YOLOv4: every example a 4-image mosaic, then
flip and colour jitter; ``MOSAIC_AUGMENT``).
"""

import dataclasses

import numpy as np
from PIL import Image

from jaxdet.data import augment_ssd
from jaxdet.data import masks as masks_lib


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Training augmentation. Probabilities are per example; 0 disables an op.

  Attributes:
    hflip: probability of a horizontal flip.
    scale_range: (lo, hi) multiplier of the base resize scale, drawn log-uniformly; the resized
      image is randomly cropped (scale > 1) or padded (scale < 1) to the output size.
    resize: ``"letterbox"`` (keep aspect ratio), ``"plain"`` (stretch to square) or ``"rcnn"``
      (torchvision's min/max-size scale, ``rcnn_sizes``; kept aspect ratio) base resize.
    rcnn_sizes: ``(min_size, max_size)`` of the ``"rcnn"`` base resize.
    brightness, contrast, saturation: max relative change (0 disables).
    hue: max hue rotation as a fraction of the colour circle.
    photometric: probability of applying the colour jitter.
    photometric_op_prob: probability of each of brightness, contrast, saturation and hue inside
      one colour jitter (1: all of them, the default; SSD: 0.5 each).
    channel_swap: probability of a random permutation of the RGB channels inside the jitter.
    mosaic: probability of a 4-image mosaic.
    mixup: probability of blending with a second example (weight ~ Beta(mixup_alpha, same)).
    mixup_alpha: Beta parameter of the mixup weight.
    cutmix: probability of pasting a rectangle of a second example.
    cutmix_area: (lo, hi) area fraction of the pasted rectangle.
    min_visible: drop a box when less than this fraction of its area stays visible.
    min_size: drop a box when its width or height falls under this many pixels.
    fill: uint8 value of padded pixels, or an (r, g, b) triple.
    zoom_out: probability of SSD's zoom-out (0 disables the SSD ops; see ``augment_ssd``). With
      it or ``iou_crop``, an example is jittered in SSD's order: colour, zoom-out, IoU crop, then
      the base resize (``scale_range``) and the flip.
    zoom_out_range: (lo, hi) canvas side / image side of the zoom-out.
    iou_crop: probability of SSD's IoU-constrained crop.
    iou_crop_min_ious: minimum IoUs drawn uniformly; 0: any window holding a box centre, >= 1:
      keep the whole image.
    iou_crop_scale: (lo, hi) crop side / image side, drawn per side.
    iou_crop_aspect: (lo, hi) allowed crop aspect ratio (w / h).
  """
  hflip: float = 0.5
  scale_range: tuple = (0.5, 1.5)
  resize: str = "letterbox"
  rcnn_sizes: tuple = (800, 1333)
  brightness: float = 0.25
  contrast: float = 0.25
  saturation: float = 0.3
  hue: float = 0.03
  photometric: float = 0.8
  mosaic: float = 0.0
  mixup: float = 0.0
  mixup_alpha: float = 8.0
  cutmix: float = 0.0
  cutmix_area: tuple = (0.1, 0.4)
  min_visible: float = 0.3
  min_size: float = 2.0
  fill: int | tuple = 0
  photometric_op_prob: float = 1.0
  channel_swap: float = 0.0
  zoom_out: float = 0.0
  zoom_out_range: tuple = (1.0, 4.0)
  iou_crop: float = 0.0
  iou_crop_min_ious: tuple = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)
  iou_crop_scale: tuple = (0.3, 1.0)
  iou_crop_aspect: tuple = (0.5, 2.0)


NO_AUGMENT = AugmentConfig(hflip=0.0, scale_range=(1.0, 1.0), photometric=0.0)
FULL_AUGMENT = AugmentConfig(mosaic=0.5, mixup=0.15, cutmix=0.15)
# torchvision's SSD reference recipe (RandomPhotometricDistort, RandomZoomOut with the mean as
# fill, RandomIoUCrop, RandomHorizontalFlip); the base resize follows the model (stretch for SSD).
SSD_AUGMENT = AugmentConfig(
    hflip=0.5, scale_range=(1.0, 1.0), brightness=0.125, contrast=0.5, saturation=0.5, hue=0.05,
    photometric=1.0, photometric_op_prob=0.5, channel_swap=0.5, fill=(123, 117, 104),
    zoom_out=0.5, iou_crop=1.0)
MOSAIC_AUGMENT = AugmentConfig(mosaic=1.0)
PRESETS = {"none": NO_AUGMENT, "default": AugmentConfig(), "full": FULL_AUGMENT,
           "ssd": SSD_AUGMENT, "mosaic": MOSAIC_AUGMENT}


# Ops that do not move ``proposals`` (multi-image or SSD crops): off when training on proposals.
PROPOSAL_UNSAFE_OPS = ("mosaic", "mixup", "cutmix", "zoom_out", "iou_crop")


def make_config(augment):
  """``AugmentConfig`` from None (defaults), a config, a dict or an ``ml_collections.ConfigDict``."""
  if augment is None:
    return AugmentConfig()
  if isinstance(augment, AugmentConfig):
    return augment
  if isinstance(augment, str):
    if augment not in PRESETS:
      raise ValueError(f"unknown augment preset {augment!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[augment]
  values = dict(augment.to_dict() if hasattr(augment, "to_dict") else augment)
  known = {f.name for f in dataclasses.fields(AugmentConfig)}
  unknown = set(values) - known
  if unknown:
    raise ValueError(f"unknown augment options {sorted(unknown)}; known: {sorted(known)}")
  for key in ("scale_range", "rcnn_sizes", "cutmix_area", "zoom_out_range", "iou_crop_min_ious",
              "iou_crop_scale", "iou_crop_aspect"):
    if key in values:
      values[key] = tuple(values[key])
  if isinstance(values.get("fill"), (list, tuple)):
    values["fill"] = tuple(int(v) for v in values["fill"])
  cfg = AugmentConfig(**values)
  if cfg.resize not in ("letterbox", "plain", "rcnn"):
    raise ValueError(f"augment.resize must be 'letterbox', 'plain' or 'rcnn', got "
                     f"{cfg.resize!r}")
  return cfg


def _source_box(image, sx, sy, ox, oy, x0, y0, x1, y1):
  """The source box of the canvas window ``[y0:y1, x0:x1]`` onto which ``image`` lands after
  ``x -> x * sx + ox``, ``y -> y * sy + oy``; the caller guarantees the window is inside it."""
  h, w = image.shape[:2]
  return (max((x0 - ox) / sx, 0.0), max((y0 - oy) / sy, 0.0),
          min((x1 - ox) / sx, float(w)), min((y1 - oy) / sy, float(h)))  # clamp float round-off


def _resized_window(image, sx, sy, ox, oy, x0, y0, x1, y1):
  """Pixels ``[y0:y1, x0:x1]`` of the canvas onto which ``image`` lands (bilinear)."""
  box = _source_box(image, sx, sy, ox, oy, x0, y0, x1, y1)
  pil = Image.fromarray(np.ascontiguousarray(image))
  return np.asarray(pil.resize((x1 - x0, y1 - y0), Image.BILINEAR, box=box))


def place(canvas, image, boxes, sx, sy, ox, oy, region, *, min_visible, min_size, mask=None,
          mask_canvas=None):
  """Resizes ``image`` by (sx, sy), shifts it by integer (ox, oy) and draws it inside ``region``.

  Args:
    canvas: ``[S, S, 3]`` uint8, written in place.
    image: ``[H, W, 3]`` uint8.
    boxes: ``[n, 4]`` float32 xyxy in ``image`` pixels.
    sx, sy: scale factors; ox, oy: integer offsets of the resized image in the canvas.
    region: (x0, y0, x1, y1) integer canvas window that may be written (clipping window).
    min_visible: minimum visible area fraction of a kept box.
    min_size: minimum side in pixels of a kept box.
    mask: optional ``[H, W]`` uint8 mask of ``image``, drawn into ``mask_canvas``.
    mask_canvas: ``[S, S]`` uint8, written in place (the same window, nearest neighbour).

  Returns:
    ``(boxes [n', 4] float32 canvas pixels, keep [n] bool)``.
  """
  h, w = image.shape[:2]
  rx0, ry0, rx1, ry1 = region
  x0, y0 = max(rx0, ox), max(ry0, oy)
  # Only whole output pixels: the window's source box must stay inside the image.
  x1 = min(rx1, ox + int(np.floor(w * sx + 1e-6)))
  y1 = min(ry1, oy + int(np.floor(h * sy + 1e-6)))
  if x1 > x0 and y1 > y0:
    canvas[y0:y1, x0:x1] = _resized_window(image, sx, sy, ox, oy, x0, y0, x1, y1)
    if mask is not None:
      mask_canvas[y0:y1, x0:x1] = masks_lib.resize_mask_window(
          mask, (y1 - y0, x1 - x0), _source_box(image, sx, sy, ox, oy, x0, y0, x1, y1))
  moved, clipped = move_boxes(boxes, (h, w), sx, sy, ox, oy, region)
  keep = _visible_enough(moved, clipped, min_visible=min_visible, min_size=min_size)
  return clipped[keep].astype(np.float32), keep


def move_boxes(boxes, image_hw, sx, sy, ox, oy, region):
  """``(moved, clipped)`` ``[n, 4]`` float32: ``boxes`` (xyxy pixels of an ``image_hw`` image)
  resized by (sx, sy), shifted by (ox, oy), then clipped to what is visible in ``region``."""
  h, w = image_hw
  rx0, ry0, rx1, ry1 = region
  moved = boxes * np.array([sx, sy, sx, sy], np.float32) + np.array([ox, oy, ox, oy], np.float32)
  # The visible part is bounded by both the region and the resized image itself.
  lo = np.array([max(rx0, ox), max(ry0, oy)] * 2, np.float32)
  hi = np.array([min(rx1, ox + w * sx), min(ry1, oy + h * sy)] * 2, np.float32)
  return moved, np.clip(moved, lo, hi)


def _area(b):
  return np.maximum(b[:, 2] - b[:, 0], 0) * np.maximum(b[:, 3] - b[:, 1], 0)


def _visible_enough(before, after, *, min_visible, min_size):
  wh = after[:, 2:] - after[:, :2]
  return ((_area(after) >= min_visible * np.maximum(_area(before), 1e-9))
          & np.all(wh >= min_size, axis=1))


def scale_jitter(rng, example, size, cfg):
  """Base resize (letterbox/plain) times a random scale, then a random crop or pad to ``size``.

  Args:
    rng: ``np.random.Generator``.
    example: dict ``image`` uint8 ``[H, W, 3]``, ``boxes`` float32 ``[n, 4]`` xyxy pixels,
      ``classes`` int32 ``[n]``.
    size: output side ``S``.
    cfg: ``AugmentConfig`` (``scale_range``, ``resize``, ``min_visible``, ``min_size``, ``fill``).

  Returns:
    example with ``image`` uint8 ``[S, S, 3]``, ``boxes`` float32 ``[n', 4]`` xyxy in its pixels
    and the matching ``classes`` ``[n']`` (boxes mostly cropped away are dropped).
  """
  image, boxes = example["image"], example["boxes"]
  h, w = image.shape[:2]
  lo, hi = cfg.scale_range
  jitter = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else float(lo)
  if cfg.resize == "letterbox":
    sx = sy = size / max(h, w) * jitter
  elif cfg.resize == "rcnn":
    min_size, max_size = cfg.rcnn_sizes
    sx = sy = min(min_size / min(h, w), max_size / max(h, w)) * jitter
  else:
    sx, sy = size / w * jitter, size / h * jitter
  nw, nh = w * sx, h * sy
  # Offset of the resized image in the canvas: negative crops, positive pads.
  ox = int(rng.integers(min(0, int(np.floor(size - nw))), max(0, int(np.floor(size - nw))) + 1))
  oy = int(rng.integers(min(0, int(np.floor(size - nh))), max(0, int(np.floor(size - nh))) + 1))
  canvas = augment_ssd.filled(size, size, cfg.fill)
  mask = example.get("mask")
  mask_canvas = None if mask is None else np.full((size, size), masks_lib.IGNORE, np.uint8)
  new_boxes, keep = place(canvas, image, boxes, sx, sy, ox, oy, (0, 0, size, size),
                          min_visible=cfg.min_visible, min_size=cfg.min_size, mask=mask,
                          mask_canvas=mask_canvas)
  out = dict(example, image=canvas, boxes=new_boxes, classes=example["classes"][keep])
  if mask is not None:
    out["mask"] = mask_canvas
  if "proposals" in example:  # moved and clipped like the boxes, never dropped (row order kept)
    out["proposals"] = move_boxes(example["proposals"], (h, w), sx, sy, ox, oy,
                                  (0, 0, size, size))[1].astype(np.float32)
  return out


def hflip(example):
  """Mirrors an example left-right (exact: ``x -> W - x``).

  Args:
    example: dict ``image`` uint8 ``[H, W, 3]``, ``boxes`` float32 ``[n, 4]`` xyxy pixels.

  Returns:
    the example with ``image`` ``[H, W, 3]`` flipped and ``boxes`` ``[n, 4]`` mirrored.
  """
  w = example["image"].shape[1]
  flip = lambda b: np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1).astype(
      np.float32).reshape(-1, 4)
  out = dict(example, image=example["image"][:, ::-1], boxes=flip(example["boxes"]))
  if "mask" in example:
    out["mask"] = example["mask"][:, ::-1]
  if "proposals" in example:
    out["proposals"] = flip(example["proposals"])
  return out


def photometric(rng, image, cfg):
  """Brightness, contrast, saturation, hue jitter and channel swap as one affine colour map
  (boxes unchanged).

  The ops are linear, and contrast (towards the mean luma) commutes with the chroma ops, so the
  order torchvision's SSD distortion draws (contrast before or after saturation and hue) only
  changes its intermediate clipping; it is not modelled.

  Args:
    rng: ``np.random.Generator``.
    image: ``[H, W, 3]`` uint8.
    cfg: ``AugmentConfig``.

  Returns:
    ``[H, W, 3]`` uint8.
  """
  # YIQ: luma + two chroma axes; saturation scales chroma, hue rotates it.
  to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
  b = 1 + rng.uniform(-cfg.brightness, cfg.brightness)
  c = 1 + rng.uniform(-cfg.contrast, cfg.contrast)
  s = 1 + rng.uniform(-cfg.saturation, cfg.saturation)
  t = 2 * np.pi * rng.uniform(-cfg.hue, cfg.hue)
  if cfg.photometric_op_prob < 1:  # each op on its own coin (SSD); else no extra draws
    skip = rng.uniform(size=4) >= cfg.photometric_op_prob
    b, c, s, t = (v0 if off else v for v, v0, off in zip((b, c, s, t), (1, 1, 1, 0), skip))
  chroma = s * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
  m_yiq = np.eye(3)
  m_yiq[1:, 1:] = chroma
  m = np.linalg.inv(to_yiq) @ m_yiq @ to_yiq * (b * c)
  if cfg.channel_swap > 0 and rng.uniform() < cfg.channel_swap:
    m = m[rng.permutation(3)]  # channel i of the output = jittered channel perm[i]
  # Contrast pulls towards the mean luma (computed on a subsample: cheap, deterministic).
  mean_luma = float(image[::8, ::8].reshape(-1, 3).mean(0) @ to_yiq[0]) * b
  offset = (1 - c) * mean_luma
  matrix = np.concatenate([m, np.full((3, 1), offset)], axis=1).reshape(-1)
  # PIL applies the 3x4 colour matrix in C with rounding and clipping (a NumPy matmul with an
  # inner dimension of 3 was ~40x slower).
  pil = Image.fromarray(np.ascontiguousarray(image)).convert("RGB", matrix=tuple(matrix.tolist()))
  return np.asarray(pil)


def single(rng, example, size, cfg):
  """Scale jitter + crop/pad, flip and colour jitter of one example (with the SSD ops on:
  colour, zoom-out, IoU crop, base resize, flip).

  Args:
    rng: ``np.random.Generator``.
    example: dict ``image`` uint8 ``[H, W, 3]``, ``boxes`` float32 ``[n, 4]`` xyxy pixels,
      ``classes`` int32 ``[n]``.
    size: output side ``S``.
    cfg: ``AugmentConfig``.

  Returns:
    example with ``image`` uint8 ``[S, S, 3]`` and its boxes/classes.
  """
  if cfg.zoom_out > 0 or cfg.iou_crop > 0:
    # SSD's order: colour first (so the zoom-out fill stays the mean colour), then geometry.
    if cfg.photometric > 0 and rng.uniform() < cfg.photometric:
      example = dict(example, image=photometric(rng, example["image"], cfg))
    out = scale_jitter(rng, augment_ssd.zoom_out_and_crop(rng, example, cfg), size, cfg)
    return hflip(out) if rng.uniform() < cfg.hflip else out
  out = scale_jitter(rng, example, size, cfg)
  if rng.uniform() < cfg.hflip:
    out = hflip(out)
  if cfg.photometric > 0 and rng.uniform() < cfg.photometric:
    out = dict(out, image=photometric(rng, out["image"], cfg))
  return out


def mosaic(rng, examples, size, cfg):
  """Four examples around a random centre of a ``size x size`` canvas (YOLO-style mosaic).

  Each image is letterbox-scaled by a random factor in [0.5, 1] and anchored with its inner
  corner at the centre; boxes are clipped to their tile.

  Args:
    rng: ``np.random.Generator``.
    examples: four example dicts (any sizes).
    size: output side ``S``.
    cfg: ``AugmentConfig`` (``min_visible``, ``min_size``, ``fill``).

  Returns:
    example dict with ``image`` ``[S, S, 3]`` uint8.
  """
  canvas = np.full((size, size, 3), cfg.fill, np.uint8)
  with_masks = "mask" in examples[0]
  mask_canvas = np.full((size, size), masks_lib.IGNORE, np.uint8) if with_masks else None
  xc = int(rng.integers(size // 4, 3 * size // 4 + 1))
  yc = int(rng.integers(size // 4, 3 * size // 4 + 1))
  all_boxes, all_classes = [], []
  for k, ex in enumerate(examples):
    h, w = ex["image"].shape[:2]
    s = size / max(h, w) * rng.uniform(0.5, 1.0)
    nw, nh = int(round(w * s)), int(round(h * s))
    sx, sy = nw / w, nh / h
    right, bottom = k in (1, 3), k in (2, 3)
    ox = xc if right else xc - nw
    oy = yc if bottom else yc - nh
    region = (xc if right else 0, yc if bottom else 0, size if right else xc, size if bottom else yc)
    boxes, keep = place(canvas, ex["image"], ex["boxes"], sx, sy, ox, oy, region,
                        min_visible=cfg.min_visible, min_size=cfg.min_size,
                        mask=ex["mask"] if with_masks else None, mask_canvas=mask_canvas)
    all_boxes.append(boxes)
    all_classes.append(ex["classes"][keep])
  out = dict(examples[0], image=canvas, boxes=np.concatenate(all_boxes).reshape(-1, 4),
             classes=np.concatenate(all_classes))
  if with_masks:
    out["mask"] = mask_canvas
  return out


def mixup(rng, a, b, cfg):
  """Blends two same-size examples with weight ~ Beta(alpha, alpha); keeps both box sets.

  Args:
    rng: ``np.random.Generator``.
    a, b: examples with ``image`` uint8 ``[S, S, 3]``, ``boxes`` float32 ``[n, 4]`` xyxy,
      ``classes`` int32 ``[n]``.
    cfg: ``AugmentConfig`` (``mixup_alpha``).

  Returns:
    example with the blended ``image`` uint8 ``[S, S, 3]`` and ``boxes`` ``[n_a + n_b, 4]``.
  """
  lam = np.float32(rng.beta(cfg.mixup_alpha, cfg.mixup_alpha))
  image = a["image"].astype(np.float32) * lam + b["image"].astype(np.float32) * (1 - lam)
  out = dict(a, image=np.clip(np.round(image), 0, 255).astype(np.uint8),
             boxes=np.concatenate([a["boxes"], b["boxes"]]).reshape(-1, 4),
             classes=np.concatenate([a["classes"], b["classes"]]))
  if "mask" in a:  # a pixel has one class: the one of the image that dominates the blend
    out["mask"] = a["mask"] if lam >= 0.5 else b["mask"]
  return out


def cutmix(rng, a, b, cfg):
  """Pastes a random rectangle of ``b`` onto ``a`` (same size).

  ``b``'s boxes are clipped to the patch; ``a``'s boxes are dropped when mostly covered and
  shrunk when the patch covers a whole side strip of them (their visible pixels' tight box).

  Args:
    rng: ``np.random.Generator``.
    a, b: examples with ``image`` uint8 ``[S, S, 3]``, ``boxes`` float32 ``[n, 4]`` xyxy,
      ``classes`` int32 ``[n]``.
    cfg: ``AugmentConfig`` (``cutmix_area``, ``min_visible``, ``min_size``).

  Returns:
    example with ``image`` uint8 ``[S, S, 3]`` and the kept boxes of ``a`` then ``b``.
  """
  size_h, size_w = a["image"].shape[:2]
  frac = rng.uniform(*cfg.cutmix_area)
  aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
  pw = int(np.clip(round(np.sqrt(frac * aspect) * size_w), 1, size_w))
  ph = int(np.clip(round(np.sqrt(frac / aspect) * size_h), 1, size_h))
  px, py = int(rng.integers(0, size_w - pw + 1)), int(rng.integers(0, size_h - ph + 1))
  image = a["image"].copy()
  image[py:py + ph, px:px + pw] = b["image"][py:py + ph, px:px + pw]
  mask = None
  if "mask" in a:
    mask = np.array(a["mask"])
    mask[py:py + ph, px:px + pw] = b["mask"][py:py + ph, px:px + pw]
  patch = np.array([px, py, px + pw, py + ph], np.float32)

  bb = b["boxes"]
  clipped = np.clip(bb, patch[[0, 1, 0, 1]], patch[[2, 3, 2, 3]])
  keep_b = _visible_enough(bb, clipped, min_visible=cfg.min_visible, min_size=cfg.min_size)

  ab = a["boxes"].copy()
  inter = np.clip(np.minimum(ab[:, 2:], patch[2:]) - np.maximum(ab[:, :2], patch[:2]), 0, None)
  visible = _area(ab) - inter[:, 0] * inter[:, 1]
  covers_h = (patch[1] <= ab[:, 1]) & (patch[3] >= ab[:, 3])  # patch spans the box's height
  covers_w = (patch[0] <= ab[:, 0]) & (patch[2] >= ab[:, 2])
  shrunk = ab.copy()
  shrunk[:, 0] = np.where(covers_h & (patch[0] <= ab[:, 0]), np.maximum(ab[:, 0], patch[2]), ab[:, 0])
  shrunk[:, 2] = np.where(covers_h & (patch[2] >= ab[:, 2]), np.minimum(ab[:, 2], patch[0]), ab[:, 2])
  shrunk[:, 1] = np.where(covers_w & (patch[1] <= ab[:, 1]), np.maximum(ab[:, 1], patch[3]), ab[:, 1])
  shrunk[:, 3] = np.where(covers_w & (patch[3] >= ab[:, 3]), np.minimum(ab[:, 3], patch[1]), ab[:, 3])
  wh = shrunk[:, 2:] - shrunk[:, :2]
  keep_a = ((visible >= cfg.min_visible * np.maximum(_area(ab), 1e-9))
            & np.all(wh >= cfg.min_size, axis=1))
  out = dict(a, image=image,
             boxes=np.concatenate([shrunk[keep_a], clipped[keep_b]]).astype(np.float32).reshape(-1, 4),
             classes=np.concatenate([a["classes"][keep_a], b["classes"][keep_b]]))
  if mask is not None:
    out["mask"] = mask
  return out


def augment(rng, load, index, size, cfg, num_records):
  """Full training augmentation of record ``index`` to ``[size, size, 3]``.

  Args:
    rng: ``np.random.Generator`` (the only source of randomness).
    load: ``load(record_index) -> example`` (original pixels).
    index: record index of the main example.
    size: output side ``S``.
    cfg: ``AugmentConfig``.
    num_records: number of records partners are drawn from.

  Returns:
    example dict: ``image`` uint8 ``[S, S, 3]``, ``boxes`` float32 ``[n, 4]``, ``classes``.
  """
  partner = lambda: load(int(rng.integers(num_records)))
  if cfg.mosaic > 0 and rng.uniform() < cfg.mosaic:
    out = mosaic(rng, [load(index)] + [partner() for _ in range(3)], size, cfg)
    if rng.uniform() < cfg.hflip:
      out = hflip(out)
    if cfg.photometric > 0 and rng.uniform() < cfg.photometric:
      out = dict(out, image=photometric(rng, out["image"], cfg))
  else:
    out = single(rng, load(index), size, cfg)
  if cfg.mixup > 0 and rng.uniform() < cfg.mixup:
    out = mixup(rng, out, single(rng, partner(), size, cfg), cfg)
  elif cfg.cutmix > 0 and rng.uniform() < cfg.cutmix:
    out = cutmix(rng, out, single(rng, partner(), size, cfg), cfg)
  return out
