"""Detection post-processing shared by `Detector.predict`, the trainer's eval and (op for op) the
ONNX export, plus the score/box helpers that every detector's `decode` ends with.

`decode` returns `(boxes_xyxy, scores)`: scores `[B, A, C]` are probabilities of the C foreground
classes (sigmoid, softmax with the background column dropped, or objectness x class; decode does
the arithmetic, see the `*_scores` helpers), boxes are class-agnostic `[B, A, 4]` or
class-specific `[B, A, C, 4]`. `postprocess` handles both layouts and is agnostic of how the
scores were made.
"""

import functools

import jax
import jax.numpy as jnp

from jaxdet.ops import batched_nms
from jaxdet.ops import clip_boxes_to_image

# `config.postprocess` keys and the defaults used when a config (or an old checkpoint) lacks one.
POSTPROCESS_DEFAULTS = {
    "score_threshold": 0.05,
    "iou_threshold": 0.5,
    "max_detections": 100,
    "pre_nms_top_k": 1000,
    "pre_nms_top_k_per_level": False,
    "pre_nms_top_k_per_class": False,
}


def postprocess_settings(postprocess_config=None) -> dict:
  """The `config.postprocess` settings as plain Python values, defaults for missing keys.

  Args:
    postprocess_config: a `config.postprocess` ConfigDict or dict (None: all defaults). Keys
      other than those of `POSTPROCESS_DEFAULTS` are errors.

  Returns:
    dict with `score_threshold` float, `iou_threshold` float, `max_detections` int,
    `pre_nms_top_k` int, `pre_nms_top_k_per_level` bool, `pre_nms_top_k_per_class` bool.
  """
  values = dict(postprocess_config.items()) if postprocess_config is not None else {}
  unknown = sorted(set(values) - set(POSTPROCESS_DEFAULTS))
  if unknown:
    raise ValueError(f"unknown postprocess keys {unknown}; known: {sorted(POSTPROCESS_DEFAULTS)}")
  out = dict(POSTPROCESS_DEFAULTS, **values)
  return {"score_threshold": float(out["score_threshold"]),
          "iou_threshold": float(out["iou_threshold"]),
          "max_detections": int(out["max_detections"]),
          "pre_nms_top_k": int(out["pre_nms_top_k"]),
          "pre_nms_top_k_per_level": bool(out["pre_nms_top_k_per_level"]),
          "pre_nms_top_k_per_class": bool(out["pre_nms_top_k_per_class"])}


def level_sizes_of(model_config, image_size) -> tuple[int, ...]:
  """Anchors per level, in the order of A, from the model family's `level_sizes(config, size)`.

  Raises:
    ValueError: the family does not define `level_sizes`.
  """
  from jaxdet import models  # pylint: disable=g-import-not-at-top  (models imports this module)
  family = models.get_detector(model_config.name)
  fn = getattr(family, "level_sizes", None)
  if fn is None:
    raise ValueError(f"postprocess.pre_nms_top_k_per_level=True needs model {model_config.name!r} "
                     f"to define level_sizes(config, image_size); it does not")
  return tuple(int(n) for n in fn(model_config, image_size))


def postprocess_args(settings, *, model_config, image_size) -> dict:
  """Keyword arguments of `postprocess` for a model: `settings` plus the static `level_sizes`
  that the per-level option needs (computed from the model config and the input size S).

  Args:
    settings: `postprocess_settings(...)` output (or a dict with a subset of its keys).
    model_config: `config.model` (its family defines `level_sizes` when per-level is used).
    image_size: S, the square network input side.

  Returns:
    dict for `postprocess(boxes, scores, **args)`.
  """
  args = postprocess_settings(settings)
  if args["pre_nms_top_k_per_level"]:
    args["level_sizes"] = level_sizes_of(model_config, image_size)
  return args


def _candidates(scores, *, pre_nms_top_k, level_sizes, per_class=False):
  """Top-k flat (anchor * C + class) candidates, globally, per level (concatenated in level
  order) or per class (concatenated in class order). Returns `(scores [k], flat indices [k]
  int32)`; ties: lower flat index first."""
  num_anchors, num_classes = scores.shape
  if per_class:  # [C, k]: each class's best anchors (torchvision SSD's per-class top-k)
    s, anchor = jax.lax.top_k(scores.T, min(pre_nms_top_k, num_anchors))
    flat = anchor * num_classes + jnp.arange(num_classes, dtype=anchor.dtype)[:, None]
    return s.reshape(-1), flat.reshape(-1)
  if level_sizes is None:
    flat = scores.reshape(-1)
    return jax.lax.top_k(flat, min(pre_nms_top_k, flat.shape[0]))
  top_scores, top_idx, start = [], [], 0
  for size in level_sizes:
    flat = scores[start:start + size].reshape(-1)
    s, i = jax.lax.top_k(flat, min(pre_nms_top_k, flat.shape[0]))
    top_scores.append(s)
    top_idx.append(i + start * num_classes)
    start += size
  return jnp.concatenate(top_scores), jnp.concatenate(top_idx)


def _postprocess_one(boxes_xyxy, scores, *, score_threshold, iou_threshold, max_detections,
                     pre_nms_top_k, level_sizes, per_class):
  num_classes = scores.shape[1]
  top_scores, top_idx = _candidates(scores, pre_nms_top_k=pre_nms_top_k, level_sizes=level_sizes,
                                    per_class=per_class)
  cand_anchors = top_idx // num_classes
  cand_classes = (top_idx % num_classes).astype(jnp.int32)
  if boxes_xyxy.ndim == 3:  # class-specific: the box of the candidate's class
    cand_boxes = boxes_xyxy[cand_anchors, cand_classes]
  else:
    cand_boxes = boxes_xyxy[cand_anchors]
  # A box of zero area (e.g. clipped away onto an image edge) is no detection: never kept.
  nonempty = (cand_boxes[:, 2] > cand_boxes[:, 0]) & (cand_boxes[:, 3] > cand_boxes[:, 1])
  cand_scores = jnp.where((top_scores >= score_threshold) & nonempty, top_scores, -jnp.inf)
  res = batched_nms(cand_boxes, cand_scores, cand_classes, iou_threshold=iou_threshold,
                    max_output_size=max_detections)
  idx = jnp.where(res.valid, res.indices, 0)
  valid = res.valid
  out_boxes = jnp.where(valid[:, None], cand_boxes[idx], 0.0)
  out_scores = jnp.where(valid, top_scores[idx], 0.0)
  out_classes = jnp.where(valid, cand_classes[idx], 0)
  return out_boxes, out_scores, out_classes, res.num_valid.astype(jnp.int32)


def check_layout(boxes_shape, scores_shape, *, level_sizes=None):
  """Raises ValueError unless boxes are `[B, A, 4]` or `[B, A, C, 4]` for scores `[B, A, C]`
  and `level_sizes` (if given) are positive and sum to A."""
  boxes_shape, scores_shape = tuple(boxes_shape), tuple(scores_shape)
  if len(scores_shape) != 3:
    raise ValueError(f"scores must be [B, A, C], got shape {scores_shape}")
  agnostic = boxes_shape == scores_shape[:2] + (4,)
  specific = boxes_shape == scores_shape + (4,)
  if not (agnostic or specific):
    raise ValueError(f"boxes_xyxy must be [B, A, 4] or [B, A, C, 4] for scores [B, A, C] = "
                     f"{scores_shape}; got boxes_xyxy {boxes_shape}")
  if level_sizes is not None:
    sizes = tuple(level_sizes)
    if not sizes or min(sizes) < 1 or sum(sizes) != scores_shape[1]:
      raise ValueError(f"level_sizes must be positive and sum to A = {scores_shape[1]}, got "
                       f"{sizes}")


def postprocess(boxes_xyxy, scores, *, score_threshold=0.05, iou_threshold=0.5,
                max_detections=100, pre_nms_top_k=1000, pre_nms_top_k_per_level=False,
                level_sizes=None, pre_nms_top_k_per_class=False):
  """Per-class NMS over (anchor, class) candidates, padded to a fixed number of detections.

  The algorithm of DESIGN.md: flatten to A*C candidates; keep the `pre_nms_top_k` best by score
  (ties: lower flat index first), over all anchors or, with `pre_nms_top_k_per_level`, per level
  (then the levels' candidates are concatenated in level order, as torchvision's RetinaNet) or,
  with `pre_nms_top_k_per_class`, per class over all anchors (the classes' candidates
  concatenated in class order, as torchvision's SSD);
  candidates below `score_threshold` or with a box of zero area (width or height <= 0) become
  invalid; class-aware `jaxdet.ops.batched_nms` (its
  own order: descending score, ties by candidate index); outputs in NMS order, zero past
  `num_detections`. Boxes are used as given (`decode` clips them to the input).

  Args:
    boxes_xyxy: float32 `[B, A, 4]` (class-agnostic) or `[B, A, C, 4]` (class-specific: a
      candidate (a, c) takes box `[a, c]`), input pixels.
    scores: float32 `[B, A, C]` probabilities of the C foreground classes.
    score_threshold: minimum score kept (inclusive).
    iou_threshold: NMS IoU threshold (same class only; suppressed when IoU > it).
    max_detections: K, detections per image.
    pre_nms_top_k: candidates entering NMS (per level with `pre_nms_top_k_per_level`), clamped
      to the candidates available.
    pre_nms_top_k_per_level: select the top-k per level instead of over all anchors.
    level_sizes: static tuple of anchors per level (in the order of A, summing to A); required
      with `pre_nms_top_k_per_level`, ignored otherwise.
    pre_nms_top_k_per_class: select the top-k anchors of each class (k * C candidates); not
      combinable with `pre_nms_top_k_per_level`.

  Returns:
    dict with `boxes` float32 `[B, K, 4]`, `scores` float32 `[B, K]`, `classes` int32 `[B, K]`,
    `num_detections` int32 `[B]`.
  """
  level_sizes = tuple(int(n) for n in level_sizes) if pre_nms_top_k_per_level and (
      level_sizes is not None) else None  # static (hashable) for jit
  return _postprocess(boxes_xyxy, scores, score_threshold=score_threshold,
                      iou_threshold=iou_threshold, max_detections=max_detections,
                      pre_nms_top_k=pre_nms_top_k, pre_nms_top_k_per_level=pre_nms_top_k_per_level,
                      level_sizes=level_sizes,
                      pre_nms_top_k_per_class=bool(pre_nms_top_k_per_class))


@functools.partial(jax.jit, static_argnames=("score_threshold", "iou_threshold", "max_detections",
                                             "pre_nms_top_k", "pre_nms_top_k_per_level",
                                             "level_sizes", "pre_nms_top_k_per_class"))
def _postprocess(boxes_xyxy, scores, *, score_threshold, iou_threshold, max_detections,
                 pre_nms_top_k, pre_nms_top_k_per_level, level_sizes, pre_nms_top_k_per_class):
  check_layout(boxes_xyxy.shape, scores.shape, level_sizes=level_sizes)
  if max_detections < 1 or pre_nms_top_k < 1:
    raise ValueError(f"max_detections and pre_nms_top_k must be >= 1, got {max_detections} and "
                     f"{pre_nms_top_k}")
  if pre_nms_top_k_per_level and level_sizes is None:
    raise ValueError("pre_nms_top_k_per_level=True needs level_sizes (anchors per level)")
  if pre_nms_top_k_per_level and pre_nms_top_k_per_class:
    raise ValueError("pre_nms_top_k_per_level and pre_nms_top_k_per_class cannot both be True")
  fn = functools.partial(_postprocess_one, score_threshold=score_threshold,
                         iou_threshold=iou_threshold, max_detections=max_detections,
                         pre_nms_top_k=pre_nms_top_k, level_sizes=level_sizes,
                         per_class=pre_nms_top_k_per_class)
  b, s, c, n = jax.vmap(fn)(boxes_xyxy.astype(jnp.float32), scores.astype(jnp.float32))
  return {"boxes": b, "scores": s, "classes": c, "num_detections": n}


def clip_and_score(boxes_xyxy, cls_logits, *, image_size):
  """The last step of a sigmoid detector's `decode`: clip boxes to the input, logits to
  probabilities.

  Args:
    boxes_xyxy: `[B, A, 4]` or `[B, A, C, 4]` decoded boxes in input pixels.
    cls_logits: `[B, A, C]` class logits (any float dtype).
    image_size: int S (square input) or (H, W).

  Returns:
    boxes_xyxy float32 (same shape) clipped to the image, scores float32 `[B, A, C]` in [0, 1].
  """
  return clip_boxes(boxes_xyxy, image_size=image_size), sigmoid_scores(cls_logits)


def clip_boxes(boxes_xyxy, *, image_size):
  """`[B, ..., 4]` boxes clipped to `[0, W] x [0, H]` of the input, float32.

  Args:
    boxes_xyxy: `[B, A, 4]` or `[B, A, C, 4]` boxes.
    image_size: S, `(H, W)`, or an int/float array `[B, 2]` of per-image `(h, w)` (the valid
      extent of each image in a padded batch: torchvision's `image_sizes`).
  """
  boxes = boxes_xyxy.astype(jnp.float32)
  if isinstance(image_size, int):
    return clip_boxes_to_image(boxes, (image_size, image_size))
  if getattr(image_size, "ndim", 1) == 2:  # per image: broadcast over the anchor/class axes
    hw = jnp.asarray(image_size, jnp.float32).reshape((boxes.shape[0],) + (1,) * (
        boxes.ndim - 2) + (2,))
    return clip_boxes_to_image(boxes, (hw[..., 0], hw[..., 1]))
  return clip_boxes_to_image(boxes, tuple(image_size))


def valid_extent(preds, image_size):
  """What a decode clips to: the per-image `image_hw` `[B, 2]` of the predictions when the
  model got one (`targets["image_hw"]`, the "rcnn" preprocessing), else the input `image_size`."""
  return preds.get("image_hw", image_size)


def sigmoid_scores(cls_logits):
  """Independent per-class probabilities: `[B, A, C]` logits -> `[B, A, C]` float32."""
  return jax.nn.sigmoid(cls_logits.astype(jnp.float32))


def softmax_scores(logits, *, background_index=0):
  """Softmax over C + 1 columns, the background column dropped (torchvision SSD / Faster R-CNN).

  Args:
    logits: `[B, A, C + 1]` logits including the background class.
    background_index: the background column (0 as torchvision, or -1 for the last).

  Returns:
    `[B, A, C]` float32 probabilities of the foreground classes (they sum to 1 - p_background).
  """
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  i = background_index % logits.shape[-1]
  return jnp.concatenate([probs[..., :i], probs[..., i + 1:]], axis=-1)


def objectness_scores(objectness_logits, cls_logits, *, class_activation="sigmoid"):
  """Objectness x class probability (YOLOv3-style `sigmoid(obj) * sigmoid(cls)`).

  Args:
    objectness_logits: `[B, A]` or `[B, A, 1]` objectness logits.
    cls_logits: `[B, A, C]` class logits.
    class_activation: "sigmoid" (independent classes) or "softmax" (one class per anchor).

  Returns:
    `[B, A, C]` float32 in [0, 1].
  """
  obj = objectness_logits.astype(jnp.float32)
  if obj.ndim == cls_logits.ndim - 1:
    obj = obj[..., None]
  if class_activation == "sigmoid":
    cls = jax.nn.sigmoid(cls_logits.astype(jnp.float32))
  elif class_activation == "softmax":
    cls = jax.nn.softmax(cls_logits.astype(jnp.float32), axis=-1)
  else:
    raise ValueError(f"class_activation must be 'sigmoid' or 'softmax', got {class_activation!r}")
  return jax.nn.sigmoid(obj) * cls
