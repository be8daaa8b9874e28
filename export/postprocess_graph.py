"""The detection post-processing as a standalone ONNX graph (built with ``onnx.helper``).

It reproduces ``jaxdet.models.postprocess`` (DESIGN.md) op for op:

1. flatten ``scores [N, A, C]`` to ``A*C`` (anchor, class) candidates;
2. ``TopK(pre_nms_top_k)`` (ONNX TopK breaks ties by the lower index, as ``jax.lax.top_k``), over
   all anchors or, with ``pre_nms_top_k_per_level``, over each level's slice of A (static
   ``level_sizes``), the levels' candidates concatenated in level order, or with
   ``pre_nms_top_k_per_class`` over each class's column (classes concatenated in class order);
   each candidate takes its
   anchor's box (``[N, A, 4]``) or the box of its class (class-specific ``[N, A, C, 4]``);
3. candidates with ``score < score_threshold`` or a box of zero area become invalid;
4. class-aware NMS with ONNX ``NonMaxSuppression``: every candidate is placed in the score row of its
   own class (``[N, C, k]``, -1 elsewhere), so NMS runs per class on the exact, un-offset
   coordinates; greedy class-aware NMS truncated to K equals the K best of the per-class survivors;
5. the survivors are ordered by ``TopK`` on score (descending, ties by candidate index = NMS order)
   and zero-padded past ``num_detections``.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Score given to invalid candidates; valid scores are probabilities in [0, 1].
_INVALID_SCORE = -1.0
# NMS drops scores <= this (between the sentinel and any valid score, whatever the runtime's
# strict/non-strict convention).
_NMS_SCORE_FLOOR = -0.5


def check_postprocess_params(*, score_threshold, iou_threshold, max_detections, pre_nms_top_k,
                             pre_nms_top_k_per_level=False, level_sizes=None,
                             pre_nms_top_k_per_class=False):
  """Raises ValueError unless the thresholds and sizes are usable.

  Args:
    score_threshold: float in [0, 1].
    iou_threshold: float in [0, 1].
    max_detections: int >= 1.
    pre_nms_top_k: int >= 1.
    pre_nms_top_k_per_level: bool.
    level_sizes: positive ints (required with ``pre_nms_top_k_per_level``).
    pre_nms_top_k_per_class: bool (not with ``pre_nms_top_k_per_level``).
  """
  for name, value in (("pre_nms_top_k_per_level", pre_nms_top_k_per_level),
                      ("pre_nms_top_k_per_class", pre_nms_top_k_per_class)):
    if not isinstance(value, (bool, np.bool_)):
      raise ValueError(f"{name} must be a bool, got {value!r}")
  if pre_nms_top_k_per_level and pre_nms_top_k_per_class:
    raise ValueError("pre_nms_top_k_per_level and pre_nms_top_k_per_class cannot both be True")
  if pre_nms_top_k_per_level and (
      not level_sizes or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1
                             for n in level_sizes)):
    raise ValueError(f"pre_nms_top_k_per_level needs level_sizes, positive integers; got "
                     f"{level_sizes!r}")
  for name, value in (("score_threshold", score_threshold), ("iou_threshold", iou_threshold)):
    if not (isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0):
      raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
  for name, value in (("max_detections", max_detections), ("pre_nms_top_k", pre_nms_top_k)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name} must be a positive integer, got {value!r}")


def postprocess_model(
    *,
    num_anchors,
    num_classes,
    score_threshold,
    iou_threshold,
    max_detections,
    pre_nms_top_k,
    opset,
    pre_nms_top_k_per_level=False,
    level_sizes=None,
    pre_nms_top_k_per_class=False,
    class_specific_boxes=False,
    image_size=None,
    dynamic_image_size=False,
    boxes_name="raw_boxes",
    scores_name="raw_scores",
    batch_dim="N",
    box_back=False,
    dynamic_levels=None,
):
  """Builds the post-processing ONNX model.

  Args:
    num_anchors: A, the number of anchors (static).
    num_classes: C, the number of classes (static).
    score_threshold: candidates with a score below it are dropped (float in [0, 1]).
    iou_threshold: NMS suppresses boxes with IoU strictly above it (float in [0, 1]).
    max_detections: K, detections kept per image.
    pre_nms_top_k: candidates kept by score before NMS (clamped to ``A*C``, or per level to
      ``level_size * C``).
    opset: ONNX opset of the default domain (>= 13).
    pre_nms_top_k_per_level: the top-k is taken per level (torchvision RetinaNet).
    level_sizes: anchors per level in the order of A (summing to A); with the per-level option.
    pre_nms_top_k_per_class: the top-k anchors are taken per class (torchvision SSD).
    class_specific_boxes: the boxes input is ``[N, A, C, 4]`` (a box per class).
    image_size: S; with a fixed image size, boxes are clipped to ``[0, S]``.
    dynamic_image_size: add inputs ``box_scale`` float32 ``[4]`` (``sx, sy, sx, sy``, network
      pixels per input pixel) and ``box_limit`` float32 ``[4]`` (``w, h, w, h`` of the input
      image): boxes are divided by the first and clipped to ``[0, box_limit]``.
    boxes_name: name of the ``[N, A, 4]`` float32 xyxy boxes input.
    scores_name: name of the ``[N, A, C]`` float32 scores input.
    batch_dim: symbolic name of the batch dimension.
    box_back: add inputs ``box_back`` float32 ``[4]`` (input-image pixels per network pixel,
      ``bx, by, bx, by``) and ``box_limit`` (as above): boxes are multiplied by the first
      (torchvision's ``resize_boxes``) and clipped to ``[0, box_limit]``.
    dynamic_levels: L, for anchors whose per-level counts are known only at run time (a network
      of dynamic input size): adds the input ``level_sizes`` int64 ``[L]`` (anchors per level, in
      the order of A, A itself dynamic; ``num_anchors`` is ignored) and takes the top-k per level
      with ``pre_nms_top_k_per_level``: a level with fewer than ``pre_nms_top_k`` candidates is
      padded with invalid ones, so the candidate count is static.

  Returns:
    ``onnx.ModelProto`` with inputs ``boxes_name`` float32 ``[N, A, 4]`` (or ``[N, A, C, 4]``)
    and ``scores_name`` float32 ``[N, A, C]`` and outputs ``num_detections`` int64 ``[N]``, ``detection_boxes``
    float32 ``[N, K, 4]`` (xyxy, same pixels as the input), ``detection_scores`` float32
    ``[N, K]``, ``detection_classes`` int64 ``[N, K]``, zero past ``num_detections``.
  """
  check_postprocess_params(score_threshold=score_threshold, iou_threshold=iou_threshold,
                           max_detections=max_detections, pre_nms_top_k=pre_nms_top_k,
                           pre_nms_top_k_per_level=pre_nms_top_k_per_level,
                           level_sizes=level_sizes if dynamic_levels is None else (1,),
                           pre_nms_top_k_per_class=pre_nms_top_k_per_class)
  if opset < 13:
    raise ValueError(f"opset must be >= 13 for the post-processing graph, got {opset}")
  c, big_k = int(num_classes), int(max_detections)
  a, levels, level_k = _candidate_counts(
      num_anchors, c, pre_nms_top_k=int(pre_nms_top_k), per_level=pre_nms_top_k_per_level,
      level_sizes=level_sizes, per_class=pre_nms_top_k_per_class, dynamic_levels=dynamic_levels)
  kk = min(big_k, sum(level_k))  # the final TopK runs over the candidates
  nodes, inits, const, op = _builder()
  # 1-2. Flatten and pre-NMS top-k (flat index = anchor * C + class), per level if asked.
  if dynamic_levels is not None:
    flat = op("Reshape", [scores_name, const("pp_shape_flat", [0, -1], np.int64)], ["pp_flat"])
    top_scores, top_idx = _top_k_padded(op, const, flat, k=int(pre_nms_top_k),
                                        num_levels=int(dynamic_levels), num_classes=c)
  elif pre_nms_top_k_per_class:
    top_scores, top_idx = _top_k_per_class(op, const, scores_name, k=min(int(pre_nms_top_k), a),
                                           num_classes=c)
  else:
    flat = op("Reshape", [scores_name, const("pp_shape_flat", [0, -1], np.int64)], ["pp_flat"])
    top_scores, top_idx = _top_k(op, const, flat, levels=levels, level_k=level_k, num_classes=c)
  # 3. Each candidate's class and box.
  cls, cand_boxes = _candidate_boxes(op, const, boxes_name, top_idx, num_classes=c,
                                     class_specific=class_specific_boxes)
  # 4. Score threshold and non-empty boxes.
  masked = _valid_scores(op, const, top_scores, cand_boxes, score_threshold=score_threshold)
  # 5. Class-aware NMS.
  kept, final_scores = _class_aware_nms(op, const, cand_boxes, masked, cls, num_classes=c,
                                        iou_threshold=iou_threshold, max_detections=big_k)
  # 6. Survivors in score order, mapped to the input image, zero-padded to K.
  _ordered_outputs(op, const, final_scores, kept, cand_boxes, cls, kk=kk, max_detections=big_k,
                   box_map=dict(image_size=image_size, dynamic_image_size=dynamic_image_size,
                                box_back=box_back))
  n = batch_dim
  graph = helper.make_graph(
      nodes, "jaxdet_postprocess",
      inputs=_inputs(n, a, c, boxes_name, scores_name, dynamic_image_size,
                     class_specific_boxes, box_back=box_back, dynamic_levels=dynamic_levels),
      outputs=[helper.make_tensor_value_info("num_detections", TensorProto.INT64, [n]),
               helper.make_tensor_value_info("detection_boxes", TensorProto.FLOAT, [n, big_k, 4]),
               helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT, [n, big_k]),
               helper.make_tensor_value_info("detection_classes", TensorProto.INT64, [n, big_k])],
      initializer=inits)
  return _finish(graph, opset)


def _builder():
  """``(nodes, initializers, const, op)``: ``op`` takes a list of output names and returns the
  name (one output) or the names."""
  nodes, inits = [], []

  def const(name, value, dtype):
    inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
    return name

  def op(op_type, inputs, outputs, **attrs):
    nodes.append(helper.make_node(op_type, inputs, outputs, name=f"pp/{outputs[0]}", **attrs))
    return outputs[0] if len(outputs) == 1 else outputs

  return nodes, inits, const, op


def _candidate_counts(num_anchors, c, *, pre_nms_top_k, per_level, level_sizes, per_class,
                      dynamic_levels):
  """``(A or "A", level sizes, top-k per level)`` of step 2 (a static candidate count)."""
  if dynamic_levels is not None:
    if not per_level:
      raise ValueError("dynamic_levels needs pre_nms_top_k_per_level")
    return "A", None, [pre_nms_top_k] * int(dynamic_levels)
  a = int(num_anchors)
  if per_level and sum(int(n) for n in level_sizes) != a:
    raise ValueError(f"level_sizes must sum to A = {a}, got {tuple(level_sizes)}")
  # TopK over fewer than k elements is an error: clamp (per level) to what is there.
  levels = [int(n) for n in level_sizes] if per_level else [a]
  if per_class:
    return a, levels, [min(pre_nms_top_k, a) * c]
  return a, levels, [min(pre_nms_top_k, n * c) for n in levels]


def _candidate_boxes(op, const, boxes_name, top_idx, *, num_classes, class_specific):
  """Step 3: each candidate's class ``[N, k]`` and box ``[N, k, 4]``: its anchor's, or the box
  of its class (class-specific ``[N, A, C, 4]`` boxes)."""
  n_cls = const("pp_num_classes", num_classes, np.int64)
  anchor = op("Div", [top_idx, n_cls], ["pp_anchor"])
  cls = op("Mod", [top_idx, n_cls], ["pp_class"])
  axis_last = const("pp_axis_last", [-1], np.int64)
  anchor_nd = op("Unsqueeze", [anchor, axis_last], ["pp_anchor_nd"])
  if class_specific:  # [N, k, 2] (anchor, class) pairs into [N, A, C, 4]
    pair = op("Concat", [anchor_nd, op("Unsqueeze", [cls, axis_last], ["pp_class_nd"])],
              ["pp_anchor_class_nd"], axis=-1)
    return cls, op("GatherND", [boxes_name, pair], ["pp_cand_boxes"], batch_dims=1)
  return cls, op("GatherND", [boxes_name, anchor_nd], ["pp_cand_boxes"], batch_dims=1)


def _valid_scores(op, const, top_scores, cand_boxes, *, score_threshold):
  """Step 4: ``[N, k]`` scores with the sentinel for a candidate under the threshold or with a
  box of zero area."""
  above = op("GreaterOrEqual", [top_scores, const("pp_score_thr", score_threshold, np.float32)],
             ["pp_above"])
  corner = [op("Gather", [cand_boxes, const(f"pp_corner{i}", i, np.int64)], [f"pp_cand_c{i}"],
               axis=2) for i in range(4)]  # [N, k] each: x1, y1, x2, y2
  nonempty = op("And", [op("Greater", [corner[2], corner[0]], ["pp_wide"]),
                        op("Greater", [corner[3], corner[1]], ["pp_tall"])], ["pp_nonempty"])
  valid = op("And", [above, nonempty], ["pp_valid"])
  return op("Where", [valid, top_scores, const("pp_invalid_score", _INVALID_SCORE, np.float32)],
            ["pp_masked"])


def _class_aware_nms(op, const, cand_boxes, masked, cls, *, num_classes, iou_threshold,
                     max_detections):
  """Step 5: ``NonMaxSuppression`` with each candidate in its own class's score row ``[N, C, k]``
  (exact, un-offset coordinates). Returns the kept mask ``[N, k]`` and the kept scores (the
  sentinel elsewhere)."""
  invalid_score = "pp_invalid_score"
  axis1 = const("pp_axis1", [1], np.int64)
  cls_row = op("Unsqueeze", [cls, axis1], ["pp_class_row"])  # [N, 1, k]
  class_ids = const("pp_class_ids", np.arange(num_classes).reshape(1, num_classes, 1), np.int64)
  onehot = op("Equal", [cls_row, class_ids], ["pp_onehot"])  # [N, C, k]
  masked_row = op("Unsqueeze", [masked, axis1], ["pp_masked_row"])
  nms_scores = op("Where", [onehot, masked_row, invalid_score], ["pp_nms_scores"])
  selected = op("NonMaxSuppression", [
      cand_boxes, nms_scores, const("pp_max_per_class", [max_detections], np.int64),
      const("pp_iou_thr", [iou_threshold], np.float32),
      const("pp_nms_floor", [_NMS_SCORE_FLOOR], np.float32)], ["pp_selected"])  # [M, 3]
  # Keep mask [N, k] from the (batch, candidate) pairs NMS selected.
  pairs = op("Gather", [selected, const("pp_cols", [0, 2], np.int64)], ["pp_pairs"], axis=1)
  zeros = op("ConstantOfShape", [op("Shape", [masked], ["pp_masked_shape"])], ["pp_zeros"],
             value=numpy_helper.from_array(np.zeros(1, np.float32)))
  num_sel = op("Slice", [op("Shape", [selected], ["pp_sel_shape"]),
                         const("pp_0", [0], np.int64), const("pp_1", [1], np.int64)],
               ["pp_num_sel"])
  ones = op("ConstantOfShape", [num_sel], ["pp_ones"],
            value=numpy_helper.from_array(np.ones(1, np.float32)))
  keep = op("ScatterND", [zeros, pairs, ones], ["pp_keep"])
  kept = op("Greater", [keep, const("pp_half", 0.5, np.float32)], ["pp_kept"])
  return kept, op("Where", [kept, masked, invalid_score], ["pp_final_scores"])


def _ordered_outputs(op, const, final_scores, kept, cand_boxes, cls, *, kk, max_detections,
                     box_map):
  """Step 6: the graph outputs: survivors ordered by score (ties keep the candidate = NMS
  order), boxes mapped to the input image (``_boxes_to_image(**box_map)``), zero past
  ``num_detections`` and padded to K slots."""
  big_k = max_detections
  axis1 = "pp_axis1"
  out_scores, out_idx = op("TopK", [final_scores, const("pp_kk", [kk], np.int64)],
                           ["pp_out_scores", "pp_out_idx"], axis=-1, largest=1, sorted=1)
  num = op("ReduceSum", [op("Cast", [kept], ["pp_kept_i64"], to=TensorProto.INT64), axis1],
           ["pp_num_kept"], keepdims=0)
  num = op("Min", [num, const("pp_big_k", big_k, np.int64)], ["pp_num"])
  positions = const("pp_positions", np.arange(kk).reshape(1, kk), np.int64)
  pos_valid = op("Less", [positions, op("Unsqueeze", [num, axis1], ["pp_num_col"])],
                 ["pp_pos_valid"])  # [N, kk]
  out_idx_nd = op("Unsqueeze", [out_idx, const("pp_axis_last2", [-1], np.int64)], ["pp_idx_nd"])
  det_boxes = op("GatherND", [cand_boxes, out_idx_nd], ["pp_det_boxes"], batch_dims=1)
  det_boxes = _boxes_to_image(op, const, det_boxes, **box_map)
  det_classes = op("GatherElements", [cls, out_idx], ["pp_det_classes"], axis=1)
  pos_valid_box = op("Unsqueeze", [pos_valid, const("pp_axis_last3", [-1], np.int64)],
                     ["pp_pos_valid_box"])
  zero_f = const("pp_zero_f", 0.0, np.float32)
  zero_i = const("pp_zero_i", 0, np.int64)
  pad = big_k - kk
  suffix = "_unpadded" if pad else ""
  outs = {
      "detection_boxes": op("Where", [pos_valid_box, det_boxes, zero_f],
                            ["detection_boxes" + suffix]),
      "detection_scores": op("Where", [pos_valid, out_scores, zero_f],
                             ["detection_scores" + suffix]),
      "detection_classes": op("Where", [pos_valid, det_classes, zero_i],
                              ["detection_classes" + suffix]),
  }
  op("Identity", [num], ["num_detections"])
  if pad:  # fewer candidates than K: pad the slot axis with zeros.
    for name, rank in (("detection_boxes", 3), ("detection_scores", 2), ("detection_classes", 2)):
      pads = [0] * (2 * rank)
      pads[rank + 1] = pad
      op("Pad", [outs[name], const(f"pp_pads_{name}", pads, np.int64)], [name], mode="constant")


def raw_outputs_model(*, num_anchors, num_classes, opset, image_size=None,
                      dynamic_image_size=False, boxes_name="raw_boxes", scores_name="raw_scores",
                      batch_dim="N", class_specific_boxes=False, box_back=False):
  """The tail of a graph exported without NMS: boxes mapped to input pixels, scores as they are.

  Args:
    num_anchors: A (static).
    num_classes: C (static).
    opset: ONNX opset of the default domain.
    image_size: S; with a fixed image size, boxes are clipped to ``[0, S]``.
    dynamic_image_size: see ``postprocess_model``.
    boxes_name: name of the ``[N, A, 4]`` float32 xyxy boxes input.
    scores_name: name of the ``[N, A, C]`` float32 scores input.
    batch_dim: symbolic name of the batch dimension.
    class_specific_boxes: boxes are ``[N, A, C, 4]``.
    box_back: see ``postprocess_model``.

  Returns:
    ``onnx.ModelProto`` with outputs ``boxes`` float32 ``[N, A, 4]`` or ``[N, A, C, 4]`` (xyxy
    input-image pixels) and ``scores`` float32 ``[N, A, C]``.
  """
  nodes, inits, const, op = _builder()
  boxes = _boxes_to_image(op, const, boxes_name, image_size=image_size,
                          dynamic_image_size=dynamic_image_size, box_back=box_back)
  op("Identity", [boxes], ["boxes"])
  op("Identity", [scores_name], ["scores"])
  n, c = batch_dim, int(num_classes)
  a = "A" if num_anchors is None else int(num_anchors)
  graph = helper.make_graph(
      nodes, "jaxdet_raw_outputs",
      inputs=_inputs(n, a, c, boxes_name, scores_name, dynamic_image_size,
                     class_specific_boxes, box_back=box_back),
      outputs=[helper.make_tensor_value_info("boxes", TensorProto.FLOAT,
                                             [n, a, c, 4] if class_specific_boxes else [n, a, 4]),
               helper.make_tensor_value_info("scores", TensorProto.FLOAT, [n, a, c])],
      initializer=inits)
  return _finish(graph, opset)


def _boxes_to_image(op, const, boxes, *, image_size, dynamic_image_size, box_back=False):
  """Maps network-pixel boxes to input-image pixels and clips them (as `Detector.predict`)."""
  if box_back:  # torchvision's models: times original / resized, in float32
    boxes = op("Mul", [boxes, "box_back"], [f"{boxes}_to_image"])
    limit = "box_limit"
  elif dynamic_image_size:
    boxes = op("Div", [boxes, "box_scale"], [f"{boxes}_unscaled"])
    limit = "box_limit"
  elif image_size is not None:
    limit = const(f"{boxes}_limit", [float(image_size)] * 4, np.float32)
  else:
    return boxes
  boxes = op("Min", [boxes, limit], [f"{boxes}_below_limit"])
  return op("Max", [boxes, const(f"{boxes}_zero", 0.0, np.float32)], [f"{boxes}_clipped"])


def _top_k(op, const, flat, *, levels, level_k, num_classes):
  """``TopK`` of ``flat [N, A*C]`` over all of it (one level) or per level, concatenated;
  returns the scores and flat indices ``[N, sum(level_k)]``."""
  if len(levels) == 1:
    return op("TopK", [flat, const("pp_k", [level_k[0]], np.int64)],
              ["pp_top_scores", "pp_top_idx"], axis=-1, largest=1, sorted=1)
  scores, indices, start = [], [], 0
  for i, (size, k) in enumerate(zip(levels, level_k)):
    lo, hi = start * num_classes, (start + size) * num_classes
    part = op("Slice", [flat, const(f"pp_l{i}_lo", [lo], np.int64),
                        const(f"pp_l{i}_hi", [hi], np.int64), const(f"pp_l{i}_axis", [1], np.int64)],
              [f"pp_l{i}_flat"])
    s, idx = op("TopK", [part, const(f"pp_l{i}_k", [k], np.int64)],
                [f"pp_l{i}_scores", f"pp_l{i}_idx"], axis=-1, largest=1, sorted=1)
    scores.append(s)
    indices.append(op("Add", [idx, const(f"pp_l{i}_offset", lo, np.int64)],
                      [f"pp_l{i}_flat_idx"]))
    start += size
  return (op("Concat", scores, ["pp_top_scores"], axis=1),
          op("Concat", indices, ["pp_top_idx"], axis=1))


def _top_k_padded(op, const, flat, *, k, num_levels, num_classes):
  """Per-level ``TopK(k)`` of ``flat [N, A*C]`` whose level sizes are the run-time input
  ``level_sizes`` (anchors per level): each level's slice is padded with ``k`` invalid (-1)
  scores first, so a short level yields its candidates and then invalid ones (score -1, flat
  index 0). Returns the scores and flat indices ``[N, num_levels * k]``, levels in order."""
  n_cls = const("pp_dl_c", [num_classes], np.int64)
  ends = op("Mul", [op("CumSum", ["level_sizes", const("pp_dl_axis", 0, np.int64)],
                       ["pp_dl_cumsum"]), n_cls], ["pp_dl_ends"])  # [L], flat (anchor * C)
  starts = op("Sub", [ends, op("Mul", ["level_sizes", n_cls], ["pp_dl_lens"])], ["pp_dl_starts"])
  rows = op("Slice", [op("Shape", [flat], ["pp_dl_shape"]), const("pp_dl_0", [0], np.int64),
                      const("pp_dl_1", [1], np.int64)], ["pp_dl_rows"])
  pad = op("Expand", [const("pp_dl_pad", np.full((1, k), _INVALID_SCORE, np.float32), np.float32),
                      op("Concat", [rows, const("pp_dl_k", [k], np.int64)], ["pp_dl_pad_shape"],
                         axis=0)], ["pp_dl_pad_block"])
  scores, indices = [], []
  for i in range(num_levels):
    at = const(f"pp_dl{i}_at", [i], np.int64)
    lo = op("Gather", [starts, at], [f"pp_dl{i}_lo"], axis=0)
    hi = op("Gather", [ends, at], [f"pp_dl{i}_hi"], axis=0)
    part = op("Slice", [flat, lo, hi, const(f"pp_dl{i}_axis", [1], np.int64)], [f"pp_dl{i}_part"])
    padded = op("Concat", [part, pad], [f"pp_dl{i}_padded"], axis=1)
    s, idx = op("TopK", [padded, const(f"pp_dl{i}_k", [k], np.int64)],
                [f"pp_dl{i}_scores", f"pp_dl{i}_idx"], axis=-1, largest=1, sorted=1)
    real = op("Less", [idx, op("Sub", [hi, lo], [f"pp_dl{i}_len"])], [f"pp_dl{i}_real"])
    scores.append(op("Where", [real, s, const(f"pp_dl{i}_inv", _INVALID_SCORE, np.float32)],
                     [f"pp_dl{i}_s"]))
    indices.append(op("Where", [real, op("Add", [idx, lo], [f"pp_dl{i}_flat"]),
                                const(f"pp_dl{i}_zero", 0, np.int64)], [f"pp_dl{i}_i"]))
  return (op("Concat", scores, ["pp_top_scores"], axis=1),
          op("Concat", indices, ["pp_top_idx"], axis=1))


def _top_k_per_class(op, const, scores, *, k, num_classes):
  """``TopK(k)`` over the anchors of each class of ``scores [N, A, C]``; returns the scores and
  flat (anchor * C + class) indices ``[N, C * k]``, concatenated in class order."""
  by_class = op("Transpose", [scores], ["pp_by_class"], perm=[0, 2, 1])  # [N, C, A]
  s, anchor = op("TopK", [by_class, const("pp_k", [k], np.int64)],
                 ["pp_class_top_scores", "pp_class_top_anchor"], axis=-1, largest=1, sorted=1)
  scaled = op("Mul", [anchor, const("pp_c_mul", num_classes, np.int64)], ["pp_anchor_times_c"])
  flat = op("Add", [scaled, const("pp_class_col", np.arange(num_classes).reshape(1, -1, 1),
                                  np.int64)], ["pp_class_flat_idx"])
  shape = const("pp_shape_flat", [0, -1], np.int64)
  return (op("Reshape", [s, shape], ["pp_top_scores"]),
          op("Reshape", [flat, shape], ["pp_top_idx"]))


def _inputs(n, a, c, boxes_name, scores_name, dynamic_image_size, class_specific_boxes,
            box_back=False, dynamic_levels=None):
  boxes_shape = [n, a, c, 4] if class_specific_boxes else [n, a, 4]
  inputs = [helper.make_tensor_value_info(boxes_name, TensorProto.FLOAT, boxes_shape),
            helper.make_tensor_value_info(scores_name, TensorProto.FLOAT, [n, a, c])]
  if box_back:
    inputs += [helper.make_tensor_value_info("box_back", TensorProto.FLOAT, [4]),
               helper.make_tensor_value_info("box_limit", TensorProto.FLOAT, [4])]
  elif dynamic_image_size:
    inputs += [helper.make_tensor_value_info("box_scale", TensorProto.FLOAT, [4]),
               helper.make_tensor_value_info("box_limit", TensorProto.FLOAT, [4])]
  if dynamic_levels is not None:
    inputs.append(helper.make_tensor_value_info("level_sizes", TensorProto.INT64,
                                                [int(dynamic_levels)]))
  return inputs


def _finish(graph, opset):
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                            producer_name="jaxdet")
  onnx.checker.check_model(model, full_check=True)
  return model
