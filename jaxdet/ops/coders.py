"""Box coders: torchvision `BoxCoder` deltas and the anchor-free (YOLO/FCOS) ltrb distance coder.

All functions are elementwise over leading dimensions (`[..., 4]`, broadcasting between anchors and
boxes/deltas), pure and jit/vmap-able.
"""

from collections.abc import Sequence
import dataclasses
import math

import jax.numpy as jnp

# torchvision's default clamp of dw, dh before exp(): boxes at most 1000/16 times the anchor.
BBOX_XFORM_CLIP = math.log(1000.0 / 16)
# Floor on widths/heights in `encode`: a degenerate (e.g. zero padding) box gives a large finite
# log instead of -inf, so masked losses never see inf * 0 = NaN. Irrelevant for real boxes.
_MIN_SIZE = 1e-8


def _centre_size(boxes_xyxy):
  w = boxes_xyxy[..., 2] - boxes_xyxy[..., 0]
  h = boxes_xyxy[..., 3] - boxes_xyxy[..., 1]
  return boxes_xyxy[..., 0] + 0.5 * w, boxes_xyxy[..., 1] + 0.5 * h, w, h


def encode(anchors_xyxy: jnp.ndarray, boxes_xyxy: jnp.ndarray, *,
           weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> jnp.ndarray:
  """Regression targets of `boxes_xyxy` relative to `anchors_xyxy` (torchvision `encode_single`).

  dx = wx (cx_b - cx_a) / w_a, dy = wy (cy_b - cy_a) / h_a, dw = ww log(w_b / w_a),
  dh = wh log(h_b / h_a). Widths/heights are floored at 1e-8 so degenerate boxes stay finite.

  Args:
    anchors_xyxy: float [..., 4] reference boxes (anchors / proposals).
    boxes_xyxy: float [..., 4] boxes to encode, broadcastable with `anchors_xyxy`.
    weights: (wx, wy, ww, wh), e.g. (1, 1, 1, 1) RetinaNet/RPN, (10, 10, 5, 5) Fast R-CNN/SSD.

  Returns:
    float [..., 4] deltas (dx, dy, dw, dh), dtype of the inputs' promotion.
  """
  wx, wy, ww, wh = weights
  ax, ay, aw, ah = _centre_size(anchors_xyxy)
  bx, by, bw, bh = _centre_size(boxes_xyxy)
  aw, ah = jnp.maximum(aw, _MIN_SIZE), jnp.maximum(ah, _MIN_SIZE)
  bw, bh = jnp.maximum(bw, _MIN_SIZE), jnp.maximum(bh, _MIN_SIZE)
  return jnp.stack([wx * (bx - ax) / aw, wy * (by - ay) / ah,
                    ww * jnp.log(bw / aw), wh * jnp.log(bh / ah)], axis=-1)


def decode(anchors_xyxy: jnp.ndarray, deltas: jnp.ndarray, *,
           weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
           clip: float = BBOX_XFORM_CLIP) -> jnp.ndarray:
  """Boxes from deltas relative to anchors (torchvision `decode_single`).

  dw/wh and dh/wh are clamped from above at `clip` before exp(), as torchvision does.

  Args:
    anchors_xyxy: float [..., 4] reference boxes.
    deltas: float [..., 4] (dx, dy, dw, dh), broadcastable with `anchors_xyxy`.
    weights: (wx, wy, ww, wh) used by `encode`.
    clip: upper bound of dw, dh (after dividing by the weights).

  Returns:
    float [..., 4] boxes xyxy, dtype of `deltas`.
  """
  wx, wy, ww, wh = weights
  anchors_xyxy = anchors_xyxy.astype(deltas.dtype)
  ax, ay, aw, ah = _centre_size(anchors_xyxy)
  dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
  dw = jnp.minimum(deltas[..., 2] / ww, clip)
  dh = jnp.minimum(deltas[..., 3] / wh, clip)
  cx, cy = dx * aw + ax, dy * ah + ay
  half_w, half_h = 0.5 * jnp.exp(dw) * aw, 0.5 * jnp.exp(dh) * ah
  return jnp.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)


@dataclasses.dataclass(frozen=True)
class BoxCoder:
  """torchvision `det_utils.BoxCoder` as a frozen value: weights and the exp() clamp.

  Attributes:
    weights: (wx, wy, ww, wh).
    bbox_xform_clip: upper bound of dw, dh in `decode`.
  """
  weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
  bbox_xform_clip: float = BBOX_XFORM_CLIP

  def encode(self, anchors_xyxy: jnp.ndarray, boxes_xyxy: jnp.ndarray) -> jnp.ndarray:
    """`encode` with this coder's weights: [..., 4] x [..., 4] -> [..., 4] deltas."""
    return encode(anchors_xyxy, boxes_xyxy, weights=self.weights)

  def decode(self, anchors_xyxy: jnp.ndarray, deltas: jnp.ndarray) -> jnp.ndarray:
    """`decode` with this coder's weights and clip: [..., 4] x [..., 4] -> [..., 4] xyxy."""
    return decode(anchors_xyxy, deltas, weights=self.weights, clip=self.bbox_xform_clip)


def _stride4(strides):
  return 1.0 if strides is None else jnp.asarray(strides)[..., None]


def encode_ltrb(points_xy: jnp.ndarray, boxes_xyxy: jnp.ndarray, *,
                strides: jnp.ndarray | None = None,
                max_distance: float | None = None) -> jnp.ndarray:
  """Distances (left, top, right, bottom) from points to box sides, in units of the stride.

  Points outside a box give negative distances (no clamp at 0) unless `max_distance` is set,
  which clamps to [0, max_distance] (e.g. `reg_max - 0.01` for distribution focal loss).

  Args:
    points_xy: float [..., 2] anchor points in pixels (see `anchors.grid_points`).
    boxes_xyxy: float [..., 4] boxes in pixels, broadcastable with the points.
    strides: optional float [...] stride of each point; distances are divided by it.
    max_distance: optional clamp of the (stride-normalised) distances.

  Returns:
    float [..., 4] distances (l, t, r, b).
  """
  x, y = points_xy[..., 0], points_xy[..., 1]
  ltrb = jnp.stack([x - boxes_xyxy[..., 0], y - boxes_xyxy[..., 1],
                    boxes_xyxy[..., 2] - x, boxes_xyxy[..., 3] - y], axis=-1) / _stride4(strides)
  if max_distance is not None:
    ltrb = jnp.clip(ltrb, 0.0, max_distance)
  return ltrb


def decode_ltrb(points_xy: jnp.ndarray, distances_ltrb: jnp.ndarray, *,
                strides: jnp.ndarray | None = None) -> jnp.ndarray:
  """Boxes from (left, top, right, bottom) distances to points; inverse of `encode_ltrb`.

  Args:
    points_xy: float [..., 2] anchor points in pixels.
    distances_ltrb: float [..., 4] distances in units of the stride, broadcastable with the points.
    strides: optional float [...] stride of each point (distances are multiplied by it).

  Returns:
    float [..., 4] boxes xyxy in pixels.
  """
  d = distances_ltrb * _stride4(strides)
  x, y = points_xy[..., 0], points_xy[..., 1]
  return jnp.stack([x - d[..., 0], y - d[..., 1], x + d[..., 2], y + d[..., 3]], axis=-1)
