"""Static anchors: torchvision `AnchorGenerator`, SSD `DefaultBoxGenerator`, anchor-free points.

Everything here runs once at trace time on the host and returns NumPy arrays (float32), which jit
treats as constants. Anchor order equals torchvision's: levels in order; within a level, locations
row-major (y outer, x inner); within a location, aspect ratios outer and sizes inner (anchors) or
torchvision's SSD order (default boxes).
"""

from collections.abc import Sequence
import math

import numpy as np

# torchvision `retinanet_resnet50_fpn`: sizes 32..512 on P3..P7, 3 scales 2^(0, 1/3, 2/3) each
# truncated with int() as torchvision does (32 -> 32, 40, 50), ratios (h/w) 0.5, 1, 2.
RETINANET_STRIDES = (8, 16, 32, 64, 128)
RETINANET_SIZES = tuple(
    (x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in (32, 64, 128, 256, 512))
RETINANET_ASPECT_RATIOS = (0.5, 1.0, 2.0)

Size = int | Sequence[int]


def _pair(size: Size) -> tuple[int, int]:
  if isinstance(size, (int, np.integer)):
    return int(size), int(size)
  h, w = size
  return int(h), int(w)


def _check_positive(name: str, values: Sequence[float]) -> None:
  values = list(values)
  if not values:
    raise ValueError(f"{name} must not be empty")
  for v in values:
    if not (math.isfinite(v) and v > 0):
      raise ValueError(f"{name} must be finite and > 0, got {values}")


def feature_sizes(image_size: Size, strides: Sequence[int]) -> tuple[tuple[int, int], ...]:
  """Feature-map sizes ceil(image / stride) produced by 'SAME'-padded stride-s convolutions.

  Args:
    image_size: int S or (H, W) of the network input in pixels.
    strides: one int stride per level.

  Returns:
    Tuple of (h, w) per level.
  """
  h, w = _pair(image_size)
  _check_positive("strides", strides)
  return tuple((-(-h // int(s)), -(-w // int(s))) for s in strides)


def cell_anchors_xyxy(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
  """Zero-centred anchors of one level, torchvision `AnchorGenerator.generate_anchors`.

  Aspect ratio is height / width. Coordinates are rounded half-to-even, as torchvision does.

  Args:
    sizes: anchor sizes (sqrt of area) in pixels.
    aspect_ratios: height / width ratios.

  Returns:
    float32 [len(aspect_ratios) * len(sizes), 4] xyxy, ratios outer, sizes inner.
  """
  _check_positive("sizes", sizes)
  _check_positive("aspect_ratios", aspect_ratios)
  # float32 throughout so that rounding ties fall exactly as in torchvision.
  scales = np.asarray(sizes, np.float32)
  h_ratios = np.sqrt(np.asarray(aspect_ratios, np.float32))
  w_ratios = np.float32(1) / h_ratios
  ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
  hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
  base = np.stack([-ws, -hs, ws, hs], axis=1) / np.float32(2)
  return np.round(base).astype(np.float32)


def num_anchors_per_location(sizes: Sequence[Sequence[float]],
                             aspect_ratios: Sequence[Sequence[float]]) -> tuple[int, ...]:
  """Anchors per feature-map location for each level.

  Args:
    sizes: per level, the anchor sizes.
    aspect_ratios: per level, the h/w ratios.

  Returns:
    Tuple of len(sizes[l]) * len(aspect_ratios[l]) per level.
  """
  return tuple(len(s) * len(a) for s, a in zip(sizes, aspect_ratios, strict=True))


def _broadcast_ratios(aspect_ratios, num_levels):
  if aspect_ratios and not isinstance(aspect_ratios[0], (list, tuple)):
    return (tuple(aspect_ratios),) * num_levels
  if len(aspect_ratios) != num_levels:
    raise ValueError(f"aspect_ratios has {len(aspect_ratios)} levels, sizes has {num_levels}")
  return aspect_ratios


def multilevel_anchors_xyxy(image_size: Size, level_sizes: Sequence[Size], *,
                            sizes: Sequence[Sequence[float]] = RETINANET_SIZES,
                            aspect_ratios=RETINANET_ASPECT_RATIOS) -> np.ndarray:
  """All anchors of an FPN, exactly torchvision `AnchorGenerator` (per image).

  As torchvision, the stride of a level is `image_size // level_size` (integer division) and the
  anchor centres are at `(ix * stride_w, iy * stride_h)` (top-left of each cell, not its centre).

  Args:
    image_size: int S or (H, W), the padded network input in pixels.
    level_sizes: per level, int or (h, w) of that feature map (see `feature_sizes`).
    sizes: per level, a sequence of anchor sizes in pixels.
    aspect_ratios: per level a sequence of h/w ratios, or one sequence shared by all levels.

  Returns:
    float32 [A, 4] xyxy in input pixels, A = sum_l h_l * w_l * len(sizes[l]) * len(ratios[l]).
  """
  img_h, img_w = _pair(image_size)
  if len(sizes) != len(level_sizes):
    raise ValueError(f"sizes has {len(sizes)} levels but level_sizes has {len(level_sizes)}")
  ratios = _broadcast_ratios(aspect_ratios, len(sizes))
  out = []
  for level_size, level_anchor_sizes, level_ratios in zip(level_sizes, sizes, ratios):
    gh, gw = _pair(level_size)
    if gh <= 0 or gw <= 0:
      raise ValueError(f"feature map sizes must be positive, got {level_sizes}")
    stride_h, stride_w = img_h // gh, img_w // gw
    base = cell_anchors_xyxy(level_anchor_sizes, level_ratios)
    shift_y, shift_x = np.meshgrid(np.arange(gh) * stride_h, np.arange(gw) * stride_w,
                                   indexing="ij")
    shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
    shifts = np.stack([shift_x, shift_y, shift_x, shift_y], axis=1).astype(np.float32)
    out.append((shifts[:, None, :] + base[None, :, :]).reshape(-1, 4))
  return np.concatenate(out, axis=0).astype(np.float32)


def retinanet_anchors_xyxy(image_size: Size, *, strides: Sequence[int] = RETINANET_STRIDES,
                           sizes: Sequence[Sequence[float]] = RETINANET_SIZES,
                           aspect_ratios=RETINANET_ASPECT_RATIOS) -> np.ndarray:
  """RetinaNet anchors for a network input, levels of size ceil(image / stride).

  Args:
    image_size: int S or (H, W) in pixels.
    strides: per-level strides (default P3..P7).
    sizes: per-level anchor sizes (default torchvision RetinaNet, 9 anchors per location).
    aspect_ratios: h/w ratios, shared or per level.

  Returns:
    float32 [A, 4] xyxy in input pixels, torchvision order.
  """
  return multilevel_anchors_xyxy(image_size, feature_sizes(image_size, strides), sizes=sizes,
                                 aspect_ratios=aspect_ratios)


def ssd_scales(num_levels: int, *, min_ratio: float = 0.15,
               max_ratio: float = 0.9) -> tuple[float, ...]:
  """SSD default-box scales, as torchvision `DefaultBoxGenerator` estimates them.

  Args:
    num_levels: number of feature maps (>= 1).
    min_ratio: scale of the first level.
    max_ratio: scale of the last level.

  Returns:
    num_levels + 1 floats: linear from min_ratio to max_ratio, then 1.0 (or (min, max) for one
    level).
  """
  if num_levels < 1:
    raise ValueError(f"num_levels must be >= 1, got {num_levels}")
  if num_levels == 1:
    return (min_ratio, max_ratio)
  step = (max_ratio - min_ratio) / (num_levels - 1.0)
  return tuple(min_ratio + step * k for k in range(num_levels)) + (1.0,)


def ssd_default_boxes_xyxy(image_size: Size, level_sizes: Sequence[Size], *,
                           aspect_ratios: Sequence[Sequence[float]],
                           min_ratio: float = 0.15, max_ratio: float = 0.9,
                           scales: Sequence[float] | None = None,
                           steps: Sequence[int] | None = None, clip: bool = True) -> np.ndarray:
  """SSD default boxes, exactly torchvision `DefaultBoxGenerator` (per image).

  Per location: (s_k, s_k), (s'_k, s'_k) with s'_k = sqrt(s_k s_{k+1}), then for each ratio r
  (w, h) = (s_k sqrt(r), s_k / sqrt(r)) and its transpose. With `clip` the widths/heights are
  clipped to [0, 1] (in relative units) before conversion to xyxy, as torchvision does.

  Args:
    image_size: int S or (H, W) in pixels.
    level_sizes: per level int or (h, w) feature-map size.
    aspect_ratios: per level, the extra ratios (e.g. [[2], [2, 3], ...]).
    min_ratio: smallest scale when `scales` is None.
    max_ratio: largest scale when `scales` is None.
    scales: explicit scales (num_levels + 1 values) overriding min/max ratio.
    steps: optional per-level step in pixels; centres are (i + 0.5) * step / image_size.
    clip: clip relative widths/heights to [0, 1].

  Returns:
    float32 [A, 4] xyxy in input pixels, A = sum_l h_l * w_l * (2 + 2 * len(aspect_ratios[l])).
  """
  img_h, img_w = _pair(image_size)
  n = len(aspect_ratios)
  if len(level_sizes) != n:
    raise ValueError(f"aspect_ratios has {n} levels but level_sizes has {len(level_sizes)}")
  if steps is not None and len(steps) != n:
    raise ValueError("aspect_ratios and steps should have the same length")
  scales = ssd_scales(n, min_ratio=min_ratio, max_ratio=max_ratio) if scales is None else scales
  if len(scales) < n + 1:
    raise ValueError(f"need {n + 1} scales for {n} levels, got {len(scales)}")
  out = []
  for k, level_size in enumerate(level_sizes):
    gh, gw = _pair(level_size)
    s_k, s_prime = scales[k], math.sqrt(scales[k] * scales[k + 1])
    wh = [[s_k, s_k], [s_prime, s_prime]]
    for ar in aspect_ratios[k]:
      _check_positive("aspect_ratios", [ar])
      w, h = s_k * math.sqrt(ar), s_k / math.sqrt(ar)
      wh.extend([[w, h], [h, w]])
    wh = np.asarray(wh, np.float32)
    if clip:
      wh = np.clip(wh, 0, 1)
    if steps is not None:
      x_f, y_f = img_w / steps[k], img_h / steps[k]
    else:
      y_f, x_f = gh, gw
    cx = ((np.arange(gw, dtype=np.float32) + np.float32(0.5)) / np.float32(x_f)).astype(np.float32)
    cy = ((np.arange(gh, dtype=np.float32) + np.float32(0.5)) / np.float32(y_f)).astype(np.float32)
    cy, cx = np.meshgrid(cy, cx, indexing="ij")
    centres = np.stack([cx.reshape(-1), cy.reshape(-1)], axis=-1)  # [h*w, 2]
    centres = np.repeat(centres, len(wh), axis=0)
    wh_all = np.tile(wh, (gh * gw, 1))
    scale = np.asarray([img_w, img_h], np.float32)
    out.append(np.concatenate([(centres - np.float32(0.5) * wh_all) * scale,
                               (centres + np.float32(0.5) * wh_all) * scale], axis=-1))
  return np.concatenate(out, axis=0).astype(np.float32)


def grid_points(image_size: Size, strides: Sequence[int], *,
                offset: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
  """Anchor-free points (cell centres) of every level, for YOLO/FCOS-style heads.

  Level l has ceil(H / s_l) x ceil(W / s_l) cells; the point of cell (iy, ix) is
  ((ix + offset) * s_l, (iy + offset) * s_l) in input pixels. Order: levels, then row-major.

  Args:
    image_size: int S or (H, W) in pixels.
    strides: per-level strides in pixels.
    offset: position of the point inside its cell in units of the stride (0.5 = centre).

  Returns:
    points_xy float32 [A, 2] and strides float32 [A], A = sum_l h_l * w_l.
  """
  points, point_strides = [], []
  for (gh, gw), s in zip(feature_sizes(image_size, strides), strides):
    ys, xs = np.meshgrid(np.arange(gh, dtype=np.float32), np.arange(gw, dtype=np.float32),
                         indexing="ij")
    xy = np.stack([xs.reshape(-1), ys.reshape(-1)], axis=-1)
    points.append((xy + np.float32(offset)) * np.float32(s))
    point_strides.append(np.full((gh * gw,), s, np.float32))
  return np.concatenate(points).astype(np.float32), np.concatenate(point_strides)
