"""Box regression losses (unreduced). IoU-family losses wrap the `jaxdet.ops` elementwise forms."""

import jax.numpy as jnp

from jaxdet.ops import boxes as box_ops


def smooth_l1_loss(pred, target, *, beta=1.0 / 9.0):
  """Smooth-L1 (Huber-like) loss, torch.nn.functional.smooth_l1_loss semantics.

  `0.5 * d**2 / beta` for `|d| < beta`, else `|d| - 0.5 * beta`; `beta == 0` is plain L1.

  Args:
    pred: float32 `[..., 4]` (or any shape) predictions, e.g. encoded box deltas.
    target: float32, same shape.
    beta: transition point (>= 0).

  Returns:
    float32, same shape as `pred`, unreduced.
  """
  diff = jnp.abs(pred - target)
  if beta <= 0:
    return diff
  return jnp.where(diff < beta, 0.5 * diff**2 / beta, diff - 0.5 * beta)


def l1_loss(pred, target):
  """Elementwise absolute difference.

  Args:
    pred: float32 `[...]`.
    target: float32 `[...]`, same shape.

  Returns:
    float32 `[...]`, unreduced.
  """
  return jnp.abs(pred - target)


def giou_loss(boxes1_xyxy, boxes2_xyxy):
  """`1 - GIoU` per box pair (jaxdet.ops.generalized_box_iou_loss).

  Args:
    boxes1_xyxy: float32 `[..., 4]`.
    boxes2_xyxy: float32 `[..., 4]`, same shape.

  Returns:
    float32 `[...]`, unreduced, in [0, 2].
  """
  return box_ops.generalized_box_iou_loss(boxes1_xyxy, boxes2_xyxy)


def diou_loss(boxes1_xyxy, boxes2_xyxy):
  """`1 - DIoU` per box pair (jaxdet.ops.distance_box_iou_loss).

  Args:
    boxes1_xyxy: float32 `[..., 4]`.
    boxes2_xyxy: float32 `[..., 4]`, same shape.

  Returns:
    float32 `[...]`, unreduced.
  """
  return box_ops.distance_box_iou_loss(boxes1_xyxy, boxes2_xyxy)


def ciou_loss(boxes1_xyxy, boxes2_xyxy):
  """`1 - CIoU` per box pair (jaxdet.ops.complete_box_iou_loss).

  Args:
    boxes1_xyxy: float32 `[..., 4]`.
    boxes2_xyxy: float32 `[..., 4]`, same shape.

  Returns:
    float32 `[...]`, unreduced.
  """
  return box_ops.complete_box_iou_loss(boxes1_xyxy, boxes2_xyxy)


IOU_LOSSES = {"giou": giou_loss, "diou": diou_loss, "ciou": ciou_loss}
