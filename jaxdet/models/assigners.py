"""Dynamic label assignment for anchor-free heads, static shapes over padded ground truth.

Task-aligned assignment (TOOD, Feng et al. 2021; as used by YOLOv8): the quality of a prediction
for a ground-truth box is `t = s**alpha * iou**beta` (s: predicted score of the gt class, iou of
the predicted box with the gt). Each gt takes its top-k points by `t` among the points that lie
inside it; a point claimed by several gts goes to the one its predicted box overlaps most. Why:
the assignment follows what the network already predicts well for *both* tasks, so classification
confidence and localisation quality are trained to agree (which NMS relies on), with no anchor
shapes or IoU thresholds to tune.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdet.ops import boxes as box_ops


class AssignResult(NamedTuple):
  """Per-point targets (leading batch dims as the inputs).

  fg_mask: bool `[A]` point is positive.
  gt_index: int32 `[A]` assigned gt (0 where background).
  target_boxes_xyxy: float32 `[A, 4]` assigned gt box (zeros where background).
  target_scores: float32 `[A, C]` soft one-hot class target = normalised alignment (0 background).
  """
  fg_mask: jax.Array
  gt_index: jax.Array
  target_boxes_xyxy: jax.Array
  target_scores: jax.Array


def points_in_boxes(points_xy, boxes_xyxy, *, eps=1e-9):
  """Whether each point lies strictly inside each box.

  Args:
    points_xy: float32 `[A, 2]`.
    boxes_xyxy: float32 `[M, 4]`.
    eps: margin in pixels.

  Returns:
    bool `[M, A]`.
  """
  lt = points_xy[None, :, :] - boxes_xyxy[:, None, :2]
  rb = boxes_xyxy[:, None, 2:] - points_xy[None, :, :]
  return jnp.min(jnp.concatenate([lt, rb], axis=-1), axis=-1) > eps


def task_aligned_assign(pred_scores, pred_boxes_xyxy, points_xy, gt_boxes_xyxy, gt_classes,
                        gt_mask, *, topk=10, alpha=0.5, beta=6.0, eps=1e-9):
  """Task-aligned assignment for one image (vmap it over the batch).

  Args:
    pred_scores: float32 `[A, C]` predicted probabilities (no gradient flows through).
    pred_boxes_xyxy: float32 `[A, 4]` decoded predicted boxes, input pixels.
    points_xy: float32 `[A, 2]` anchor points (cell centres), input pixels.
    gt_boxes_xyxy: float32 `[M, 4]` padded ground truth, input pixels.
    gt_classes: int32 `[M]` class ids in [0, C) (any value where padded).
    gt_mask: bool `[M]` True for real boxes.
    topk: candidates per gt.
    alpha: exponent of the class score in the alignment metric.
    beta: exponent of the IoU in the alignment metric.
    eps: numerical guard.

  Returns:
    `AssignResult` with `[A]`, `[A, 4]`, `[A, C]` fields.
  """
  pred_scores = jax.lax.stop_gradient(pred_scores)
  pred_boxes_xyxy = jax.lax.stop_gradient(pred_boxes_xyxy)
  num_points, num_classes = pred_scores.shape
  num_gt = gt_boxes_xyxy.shape[0]
  classes = jnp.clip(gt_classes, 0, num_classes - 1).astype(jnp.int32)

  in_gt = points_in_boxes(points_xy, gt_boxes_xyxy, eps=eps) & gt_mask[:, None]  # [M, A]
  ious = box_ops.box_iou(gt_boxes_xyxy, pred_boxes_xyxy)  # [M, A]
  scores = jnp.take(pred_scores, classes, axis=1).T  # [M, A]
  align = jnp.where(in_gt, scores**alpha * ious**beta, 0.0)

  k = min(topk, num_points)
  _, top_idx = jax.lax.top_k(align, k)  # [M, k]; ties: lower index first
  rows = jnp.broadcast_to(jnp.arange(num_gt)[:, None], top_idx.shape)
  in_topk = jnp.zeros((num_gt, num_points), bool).at[rows, top_idx].set(True)
  pos = in_topk & in_gt  # [M, A]

  # A point claimed by several gts keeps only the gt with the highest IoU (first on ties).
  best_gt = jnp.argmax(jnp.where(pos, ious, -1.0), axis=0)  # [A]
  pos = pos & (jnp.arange(num_gt)[:, None] == best_gt[None, :])
  fg = jnp.any(pos, axis=0)
  gt_index = jnp.where(fg, best_gt, 0).astype(jnp.int32)

  # Soft targets: alignment normalised per gt so its best point gets that gt's best IoU.
  align_pos = jnp.where(pos, align, 0.0)
  max_align = jnp.max(align_pos, axis=1, keepdims=True)
  max_iou = jnp.max(jnp.where(pos, ious, 0.0), axis=1, keepdims=True)
  quality = jnp.max(align_pos * max_iou / (max_align + eps), axis=0)  # [A]
  target_classes = classes[gt_index]
  target_scores = jax.nn.one_hot(target_classes, num_classes) * jnp.where(fg, quality, 0.0)[:, None]
  target_boxes = jnp.where(fg[:, None], gt_boxes_xyxy[gt_index], 0.0)
  return AssignResult(fg, gt_index, target_boxes, target_scores)
