"""Detection post-processing shared by `Detector.predict` and (op for op) the ONNX export."""

import functools

import jax
import jax.numpy as jnp

from jaxdet.ops import batched_nms
from jaxdet.ops import clip_boxes_to_image


def _postprocess_one(boxes_xyxy, scores, *, score_threshold, iou_threshold, max_detections,
                     pre_nms_top_k):
  num_anchors, num_classes = scores.shape
  flat = scores.reshape(-1)
  k = min(pre_nms_top_k, flat.shape[0])
  top_scores, top_idx = jax.lax.top_k(flat, k)
  cand_boxes = boxes_xyxy[top_idx // num_classes]
  cand_classes = (top_idx % num_classes).astype(jnp.int32)
  cand_scores = jnp.where(top_scores >= score_threshold, top_scores, -jnp.inf)
  res = batched_nms(cand_boxes, cand_scores, cand_classes, iou_threshold=iou_threshold,
                            max_output_size=max_detections)
  idx = jnp.where(res.valid, res.indices, 0)
  valid = res.valid
  out_boxes = jnp.where(valid[:, None], cand_boxes[idx], 0.0)
  out_scores = jnp.where(valid, top_scores[idx], 0.0)
  out_classes = jnp.where(valid, cand_classes[idx], 0)
  return out_boxes, out_scores, out_classes, res.num_valid.astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("score_threshold", "iou_threshold",
                                             "max_detections", "pre_nms_top_k"))
def postprocess(boxes_xyxy, scores, *, score_threshold=0.05, iou_threshold=0.5,
                max_detections=100, pre_nms_top_k=1000):
  """Per-class NMS over (anchor, class) candidates, padded to a fixed number of detections.

  The algorithm of DESIGN.md: flatten to A*C candidates; keep the `pre_nms_top_k` best by score
  (ties: lower flat index first); candidates below `score_threshold` become invalid; class-aware
  `jaxdet.ops.batched_nms`; outputs in NMS order (descending score), zero past `num_detections`.

  Args:
    boxes_xyxy: float32 `[B, A, 4]` input pixels.
    scores: float32 `[B, A, C]` in [0, 1].
    score_threshold: minimum score kept.
    iou_threshold: NMS IoU threshold (same class only).
    max_detections: K, detections per image.
    pre_nms_top_k: candidates entering NMS (clamped to A*C).

  Returns:
    dict with `boxes` float32 `[B, K, 4]`, `scores` float32 `[B, K]`, `classes` int32 `[B, K]`,
    `num_detections` int32 `[B]`.
  """
  if boxes_xyxy.ndim != 3 or boxes_xyxy.shape[-1] != 4:
    raise ValueError(f"boxes_xyxy must be [B, A, 4], got {boxes_xyxy.shape}")
  if scores.ndim != 3 or scores.shape[:2] != boxes_xyxy.shape[:2]:
    raise ValueError(f"scores must be [B, A, C] with boxes' B, A; got {scores.shape} and "
                     f"{boxes_xyxy.shape}")
  if max_detections < 1 or pre_nms_top_k < 1:
    raise ValueError("max_detections and pre_nms_top_k must be >= 1")
  fn = functools.partial(_postprocess_one, score_threshold=score_threshold,
                         iou_threshold=iou_threshold, max_detections=max_detections,
                         pre_nms_top_k=pre_nms_top_k)
  b, s, c, n = jax.vmap(fn)(boxes_xyxy.astype(jnp.float32), scores.astype(jnp.float32))
  return {"boxes": b, "scores": s, "classes": c, "num_detections": n}


def clip_and_score(boxes_xyxy, cls_logits, *, image_size):
  """The last step of every detector's `decode`: clip boxes to the input, logits to probabilities.

  Args:
    boxes_xyxy: `[B, A, 4]` decoded boxes in input pixels.
    cls_logits: `[B, A, C]` class logits (any float dtype).
    image_size: int S (square input) or (H, W).

  Returns:
    boxes_xyxy float32 `[B, A, 4]` clipped to the image, scores float32 `[B, A, C]` in [0, 1].
  """
  hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
  boxes = clip_boxes_to_image(boxes_xyxy.astype(jnp.float32), hw)
  return boxes, jax.nn.sigmoid(cls_logits.astype(jnp.float32))
