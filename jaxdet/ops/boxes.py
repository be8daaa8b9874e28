"""Box conversions, areas and the IoU family, with torchvision.ops semantics.

Boxes are float arrays whose last axis holds 4 coordinates; the format is in the argument name
(`boxes_xyxy` = (x1, y1, x2, y2)). Every function is jit/vmap-able and accepts any leading batch
dims. For valid boxes (x2 >= x1, y2 >= y1) values follow torchvision's formulas term by term
(CIoU's atan(w / h) is computed as atan2(w, h): equal up to float rounding). Where torchvision
divides by zero (zero-area or inverted boxes) these functions return finite values and finite
gradients instead of NaN: inverted boxes count as having zero area.
"""

from typing import Literal

import jax
import jax.numpy as jnp

BoxFormat = Literal["xyxy", "xywh", "cxcywh"]
_FORMATS = ("xyxy", "xywh", "cxcywh")


def _check_boxes(boxes: jax.Array, name: str) -> jax.Array:
  boxes = jnp.asarray(boxes)
  if boxes.ndim < 1 or boxes.shape[-1] != 4:
    raise ValueError(f"{name} must have shape [..., 4], got {boxes.shape}.")
  if not jnp.issubdtype(boxes.dtype, jnp.floating):
    boxes = boxes.astype(jnp.float32)
  return boxes


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
  """num / den where den > 0, else 0; the gradient stays finite where den <= 0."""
  positive = den > 0
  return jnp.where(positive, num / jnp.where(positive, den, 1.0), 0.0)


def box_convert(boxes: jax.Array, in_fmt: BoxFormat, out_fmt: BoxFormat) -> jax.Array:
  """Converts boxes between `xyxy`, `xywh` (x, y, w, h) and `cxcywh` (cx, cy, w, h).

  Args:
    boxes: `[..., 4]` float boxes in `in_fmt`.
    in_fmt: one of "xyxy", "xywh", "cxcywh".
    out_fmt: one of "xyxy", "xywh", "cxcywh".

  Returns:
    `[..., 4]` boxes in `out_fmt`, same dtype.
  """
  for fmt in (in_fmt, out_fmt):
    if fmt not in _FORMATS:
      raise ValueError(f"Unsupported box format {fmt!r}; expected one of {_FORMATS}.")
  boxes = _check_boxes(boxes, "boxes")
  if in_fmt == out_fmt:
    return boxes
  a, b, c, d = jnp.moveaxis(boxes, -1, 0)
  if in_fmt == "xywh":
    a, b, c, d = a, b, a + c, b + d
  elif in_fmt == "cxcywh":
    a, b, c, d = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
  # (a, b, c, d) is xyxy now.
  if out_fmt == "xywh":
    a, b, c, d = a, b, c - a, d - b
  elif out_fmt == "cxcywh":
    a, b, c, d = (a + c) / 2, (b + d) / 2, c - a, d - b
  return jnp.stack([a, b, c, d], axis=-1)


def box_area(boxes_xyxy: jax.Array) -> jax.Array:
  """Area `(x2 - x1) * (y2 - y1)` of each box, as torchvision (negative for inverted boxes).

  Args:
    boxes_xyxy: `[..., 4]` float boxes.

  Returns:
    `[...]` float areas.
  """
  boxes_xyxy = _check_boxes(boxes_xyxy, "boxes_xyxy")
  return (boxes_xyxy[..., 2] - boxes_xyxy[..., 0]) * (boxes_xyxy[..., 3] - boxes_xyxy[..., 1])


def clip_boxes_to_image(boxes_xyxy: jax.Array, size: tuple[int, int] | jax.Array) -> jax.Array:
  """Clips x into `[0, width]` and y into `[0, height]`.

  Args:
    boxes_xyxy: `[..., 4]` float boxes.
    size: `(height, width)`; Python numbers or arrays broadcastable to `boxes_xyxy[..., 0]`
      (e.g. `[B, 1]` per-image sizes for `[B, N, 4]` boxes).

  Returns:
    `[..., 4]` clipped boxes, same dtype.
  """
  boxes_xyxy = _check_boxes(boxes_xyxy, "boxes_xyxy")
  height, width = size[0], size[1]
  x = jnp.clip(boxes_xyxy[..., 0::2], 0, jnp.asarray(width, boxes_xyxy.dtype)[..., None])
  y = jnp.clip(boxes_xyxy[..., 1::2], 0, jnp.asarray(height, boxes_xyxy.dtype)[..., None])
  return jnp.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], axis=-1)


def remove_small_boxes(boxes_xyxy: jax.Array, min_size: float) -> jax.Array:
  """Mask of boxes whose width and height are both >= `min_size` (static-shape torchvision op).

  Args:
    boxes_xyxy: `[..., 4]` float boxes.
    min_size: minimum width and height.

  Returns:
    `[...]` bool mask, True for boxes to keep.
  """
  boxes_xyxy = _check_boxes(boxes_xyxy, "boxes_xyxy")
  widths = boxes_xyxy[..., 2] - boxes_xyxy[..., 0]
  heights = boxes_xyxy[..., 3] - boxes_xyxy[..., 1]
  return (widths >= min_size) & (heights >= min_size)


def _pairwise(boxes1_xyxy: jax.Array, boxes2_xyxy: jax.Array) -> tuple[jax.Array, jax.Array]:
  boxes1_xyxy = _check_boxes(boxes1_xyxy, "boxes1_xyxy")
  boxes2_xyxy = _check_boxes(boxes2_xyxy, "boxes2_xyxy")
  if boxes1_xyxy.ndim < 2 or boxes2_xyxy.ndim < 2:
    raise ValueError(
        f"Pairwise ops need [..., N, 4] and [..., M, 4]; got {boxes1_xyxy.shape} and "
        f"{boxes2_xyxy.shape}.")
  dtype = jnp.promote_types(boxes1_xyxy.dtype, boxes2_xyxy.dtype)
  return boxes1_xyxy[..., :, None, :].astype(dtype), boxes2_xyxy[..., None, :, :].astype(dtype)


def _clamped_area(b: jax.Array) -> jax.Array:
  """Area with widths/heights clamped at 0, so inverted boxes have zero area (not negative)."""
  return jnp.maximum(b[..., 2] - b[..., 0], 0) * jnp.maximum(b[..., 3] - b[..., 1], 0)


def _inter_union(b1: jax.Array, b2: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Intersection and union with torchvision's operation order (`_box_inter_union`)."""
  area1 = _clamped_area(b1)
  area2 = _clamped_area(b2)
  wh = jnp.maximum(jnp.minimum(b1[..., 2:], b2[..., 2:]) - jnp.maximum(b1[..., :2], b2[..., :2]), 0)
  inter = wh[..., 0] * wh[..., 1]
  return inter, area1 + area2 - inter


def _enclosing_wh(b1: jax.Array, b2: jax.Array) -> jax.Array:
  """Width and height of the smallest box enclosing both."""
  corner_max = jnp.maximum(b1[..., 2:], b2[..., 2:])
  return jnp.maximum(corner_max - jnp.minimum(b1[..., :2], b2[..., :2]), 0)


def box_iou(boxes1_xyxy: jax.Array, boxes2_xyxy: jax.Array) -> jax.Array:
  """Pairwise intersection over union.

  Args:
    boxes1_xyxy: `[..., N, 4]` float boxes.
    boxes2_xyxy: `[..., M, 4]` float boxes (leading dims broadcast with `boxes1_xyxy`).

  Returns:
    `[..., N, M]` IoU in [0, 1]; 0 where the union is empty (torchvision gives NaN there).
  """
  b1, b2 = _pairwise(boxes1_xyxy, boxes2_xyxy)
  inter, union = _inter_union(b1, b2)
  return _safe_div(inter, union)


def generalized_box_iou(boxes1_xyxy: jax.Array, boxes2_xyxy: jax.Array) -> jax.Array:
  """Pairwise generalized IoU (Rezatofighi et al. 2019), as torchvision.

  Args:
    boxes1_xyxy: `[..., N, 4]` float boxes.
    boxes2_xyxy: `[..., M, 4]` float boxes.

  Returns:
    `[..., N, M]` GIoU in [-1, 1]; the enclosing-area term is 0 when that area is 0.
  """
  b1, b2 = _pairwise(boxes1_xyxy, boxes2_xyxy)
  inter, union = _inter_union(b1, b2)
  iou = _safe_div(inter, union)
  wh = _enclosing_wh(b1, b2)
  area_c = wh[..., 0] * wh[..., 1]
  return iou - _safe_div(area_c - union, area_c)


def _diou_iou(b1: jax.Array, b2: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
  inter, union = _inter_union(b1, b2)
  iou = _safe_div(inter, union)
  wh = _enclosing_wh(b1, b2)
  diagonal_sq = wh[..., 0]**2 + wh[..., 1]**2 + eps
  dx = (b1[..., 0] + b1[..., 2]) / 2 - (b2[..., 0] + b2[..., 2]) / 2
  dy = (b1[..., 1] + b1[..., 3]) / 2 - (b2[..., 1] + b2[..., 3]) / 2
  return iou - (dx**2 + dy**2) / diagonal_sq, iou


def distance_box_iou(boxes1_xyxy: jax.Array, boxes2_xyxy: jax.Array, *,
                     eps: float = 1e-7) -> jax.Array:
  """Pairwise distance IoU (Zheng et al. 2020), as torchvision.

  Args:
    boxes1_xyxy: `[..., N, 4]` float boxes.
    boxes2_xyxy: `[..., M, 4]` float boxes.
    eps: added to the squared enclosing diagonal, as torchvision.

  Returns:
    `[..., N, M]` DIoU in [-1, 1].
  """
  b1, b2 = _pairwise(boxes1_xyxy, boxes2_xyxy)
  return _diou_iou(b1, b2, eps)[0]


def _aspect_angle(b: jax.Array) -> jax.Array:
  """atan(w / h) as torchvision, via atan2 so that h = 0 or w = h = 0 stay finite (with grads)."""
  w = jnp.maximum(b[..., 2] - b[..., 0], 0)
  h = jnp.maximum(b[..., 3] - b[..., 1], 0)
  ok = w * w + h * h > jnp.finfo(b.dtype).tiny  # atan2's gradient divides by w^2 + h^2
  return jnp.where(ok, jnp.arctan2(w, jnp.where(ok, h, 1)), 0)


def _aspect_term(b1: jax.Array, b2: jax.Array) -> jax.Array:
  """CIoU's v = 4/pi^2 (atan(w2/h2) - atan(w1/h1))^2 (0 for zero-size boxes)."""
  return (4 / jnp.pi**2) * (_aspect_angle(b2) - _aspect_angle(b1))**2


def complete_box_iou(boxes1_xyxy: jax.Array, boxes2_xyxy: jax.Array, *,
                     eps: float = 1e-7) -> jax.Array:
  """Pairwise complete IoU (Zheng et al. 2020), as torchvision (alpha carries no gradient).

  Args:
    boxes1_xyxy: `[..., N, 4]` float boxes.
    boxes2_xyxy: `[..., M, 4]` float boxes.
    eps: torchvision's eps in the diagonal and in alpha's denominator.

  Returns:
    `[..., N, M]` CIoU.
  """
  b1, b2 = _pairwise(boxes1_xyxy, boxes2_xyxy)
  diou, iou = _diou_iou(b1, b2, eps)
  v = _aspect_term(b1, b2)
  alpha = jax.lax.stop_gradient(v / (1 - iou + v + eps))
  return diou - alpha * v


def _loss_inter_union(b1: jax.Array, b2: jax.Array) -> tuple[jax.Array, jax.Array]:
  """torchvision's `_loss_inter_union`, with inverted boxes given zero area."""
  x1, y1, x2, y2 = jnp.moveaxis(b1, -1, 0)
  x1g, y1g, x2g, y2g = jnp.moveaxis(b2, -1, 0)
  xk1, yk1 = jnp.maximum(x1, x1g), jnp.maximum(y1, y1g)
  xk2, yk2 = jnp.minimum(x2, x2g), jnp.minimum(y2, y2g)
  overlap = (yk2 > yk1) & (xk2 > xk1)
  inter = jnp.where(overlap, (xk2 - xk1) * (yk2 - yk1), 0.0)
  area1 = _clamped_area(b1)
  area2 = _clamped_area(b2)
  return inter, area1 + area2 - inter


def _loss_operands(boxes1_xyxy, boxes2_xyxy):
  b1 = _check_boxes(boxes1_xyxy, "boxes1_xyxy")
  b2 = _check_boxes(boxes2_xyxy, "boxes2_xyxy")
  dtype = jnp.promote_types(b1.dtype, b2.dtype)
  return jnp.broadcast_arrays(b1.astype(dtype), b2.astype(dtype))


def generalized_box_iou_loss(boxes1_xyxy: jax.Array, boxes2_xyxy: jax.Array, *,
                             eps: float = 1e-7) -> jax.Array:
  """Elementwise, unreduced `1 - GIoU`, as torchvision's `generalized_box_iou_loss`.

  Args:
    boxes1_xyxy: `[..., 4]` float boxes (predictions).
    boxes2_xyxy: `[..., 4]` float boxes (targets), broadcastable with `boxes1_xyxy`.
    eps: torchvision's eps, added to the union and enclosing-area denominators.

  Returns:
    `[...]` losses in [0, 2]; finite, with finite gradients, for degenerate boxes.
  """
  b1, b2 = _loss_operands(boxes1_xyxy, boxes2_xyxy)
  inter, union = _loss_inter_union(b1, b2)
  iou = inter / (union + eps)
  wh = _enclosing_wh(b1, b2)
  area_c = wh[..., 0] * wh[..., 1]
  return 1 - (iou - (area_c - union) / (area_c + eps))


def _diou_loss_iou(b1: jax.Array, b2: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
  inter, union = _loss_inter_union(b1, b2)
  iou = inter / (union + eps)
  wh = _enclosing_wh(b1, b2)
  diagonal_sq = wh[..., 0]**2 + wh[..., 1]**2 + eps
  dx = (b1[..., 2] + b1[..., 0]) / 2 - (b2[..., 2] + b2[..., 0]) / 2
  dy = (b1[..., 3] + b1[..., 1]) / 2 - (b2[..., 3] + b2[..., 1]) / 2
  return 1 - iou + (dx**2 + dy**2) / diagonal_sq, iou


def distance_box_iou_loss(boxes1_xyxy: jax.Array, boxes2_xyxy: jax.Array, *,
                          eps: float = 1e-7) -> jax.Array:
  """Elementwise, unreduced `1 - DIoU`, as torchvision's `distance_box_iou_loss`.

  Args:
    boxes1_xyxy: `[..., 4]` float boxes (predictions).
    boxes2_xyxy: `[..., 4]` float boxes (targets), broadcastable with `boxes1_xyxy`.
    eps: torchvision's eps (union and squared-diagonal denominators).

  Returns:
    `[...]` losses in [0, 2].
  """
  b1, b2 = _loss_operands(boxes1_xyxy, boxes2_xyxy)
  return _diou_loss_iou(b1, b2, eps)[0]


def complete_box_iou_loss(boxes1_xyxy: jax.Array, boxes2_xyxy: jax.Array, *,
                          eps: float = 1e-7) -> jax.Array:
  """Elementwise, unreduced `1 - CIoU`, as torchvision's `complete_box_iou_loss`.

  alpha = v / (1 - IoU + v + eps) carries no gradient (torchvision computes it under no_grad).

  Args:
    boxes1_xyxy: `[..., 4]` float boxes (predictions).
    boxes2_xyxy: `[..., 4]` float boxes (targets), broadcastable with `boxes1_xyxy`.
    eps: torchvision's eps.

  Returns:
    `[...]` losses.
  """
  b1, b2 = _loss_operands(boxes1_xyxy, boxes2_xyxy)
  diou_loss, iou = _diou_loss_iou(b1, b2, eps)
  v = _aspect_term(b2, b1)
  alpha = jax.lax.stop_gradient(v / (1 - iou + v + eps))
  return diou_loss + alpha * v
