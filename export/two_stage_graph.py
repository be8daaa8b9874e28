"""A two-stage detector (`faster_rcnn`) as one ONNX network: three pieces joined by ``onnx.compose``.

1. ``rpn`` (jax2onnx): uint8 images -> normalize -> backbone + FPN + RPN head -> the RPN's NMS
   candidates (`faster_rcnn.rpn_candidates`: per-level top-n, decoded, clipped, small boxes at
   score -1) and the FPN maps P2..P5;
2. ``proposals`` (built here with ``onnx.helper``): ``NonMaxSuppression`` per FPN level (each
   candidate in the score row of its level), the best ``rpn_post_nms_top_n_test`` survivors by
   ``TopK`` (= jaxdet's class-aware NMS truncated to P), then ``RoiAlign`` on each level
   (``output_half_pixel``: torchvision's aligned=False) with the FPN level rule selecting each
   RoI's level;
3. ``roi`` (jax2onnx): box head + predictor + `faster_rcnn.decode` -> ``raw_boxes``
   ``[N, P, C, 4]``, ``raw_scores`` ``[N, P, C]``, which the usual post-processing graph ends.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnx.compose
from onnx import TensorProto, helper, numpy_helper

_LEVELS = ("p2", "p3", "p4", "p5")


def is_two_stage(detector) -> bool:
  """True for a detector whose network needs this graph (the `faster_rcnn` family)."""
  try:
    return str(detector.config.model.name) == "faster_rcnn"
  except AttributeError:
    return False


def network_model(detector, *, size, opset, input_name, to_onnx):
  """The network of a `faster_rcnn` detector: ``input_name`` uint8 ``[N, S, S, 3]`` ->
  ``raw_boxes`` float32 ``[N, P, C, 4]``, ``raw_scores`` float32 ``[N, P, C]``.

  `to_onnx(fn, specs, input_names, output_names)` converts a JAX function (jax2onnx with the
  exporter's settings).
  """
  from jaxdet.data import preprocess
  from jaxdet.models.detectors import faster_rcnn
  model, variables = detector.model, detector.variables
  cfg = model.config
  if cfg.proposals != "rpn" or cfg.roi_pooler != "align":
    raise ValueError(f"ONNX export of faster_rcnn needs proposals='rpn' and roi_pooler='align', "
                     f"got {cfg.proposals!r} and {cfg.roi_pooler!r}")
  norm = preprocess.of_model(detector.config.get("model"))

  def rpn_fn(images_uint8):
    images = preprocess.normalize_image(images_uint8, norm)

    def run(m, x):
      feats = m.features(x, train=False)
      objectness, deltas, anchors, level_sizes = m.rpn(feats, x.shape[1:3])
      boxes, scores, _ = faster_rcnn.rpn_candidates(
          objectness, deltas, anchors, level_sizes=level_sizes, image_size=x.shape[1:3],
          pre_nms_top_n=cfg.rpn_pre_nms_top_n_test)
      # `+ 0`: a node of its own for each map (jax2onnx 0.17 names a map that also feeds the
      # RPN head as a graph output without a producer).
      return tuple(feats[l] + 0.0 for l in _LEVELS) + (boxes, scores)

    return model.apply(variables, images, method=run)

  # Static facts of the graph: candidate levels, map shapes.
  shapes = jax.eval_shape(rpn_fn, jax.ShapeDtypeStruct((1, size, size, 3), jnp.uint8))
  per_cell = len(cfg.anchor_sizes[0]) * len(cfg.aspect_ratios)
  hw = [tuple(s.shape[1:3]) for s in shapes[:4]]
  hw.append(tuple(-(-d // 2) for d in hw[-1]))  # "pool": P5 subsampled by 2
  level_sizes = [h * w * per_cell for h, w in hw]
  cand_levels = np.concatenate([np.full(min(cfg.rpn_pre_nms_top_n_test, n), i)
                                for i, n in enumerate(level_sizes)])
  num_proposals = min(cfg.rpn_post_nms_top_n_test, len(cand_levels))
  features = shapes[0].shape[-1]
  out = cfg.roi_output_size

  rpn = to_onnx(rpn_fn, [jax.ShapeDtypeStruct(("N", size, size, 3), jnp.uint8)], [input_name],
                list(_LEVELS) + ["cand_boxes", "cand_scores"])

  def roi_fn(roi_feats, proposals, valid):
    logits, deltas = model.apply(variables, roi_feats, method=lambda m, x: m.roi_head(
        x, train=False))
    return faster_rcnn.decode({"proposals": proposals, "proposal_mask": valid,
                               "class_logits": logits, "box_deltas": deltas}, image_size=size)

  roi = to_onnx(roi_fn, [jax.ShapeDtypeStruct(("N", num_proposals, out, out, features),
                                              jnp.float32),
                         jax.ShapeDtypeStruct(("N", num_proposals, 4), jnp.float32),
                         jax.ShapeDtypeStruct(("N", num_proposals), jnp.float32)],
                ["roi_feats", "proposals", "proposal_valid"], ["raw_boxes", "raw_scores"])
  middle = proposals_model(
      cand_levels=cand_levels, num_proposals=num_proposals,
      nms_threshold=float(cfg.rpn_nms_threshold),
      spatial_scales=[s.shape[1] / size for s in shapes[:4]], output_size=out,
      sampling_ratio=int(cfg.roi_sampling_ratio), features=features, opset=opset)
  rpn = onnx.compose.add_prefix(rpn, "rpn_", rename_inputs=False, rename_outputs=False)
  roi = onnx.compose.add_prefix(roi, "roi_", rename_inputs=False, rename_outputs=False)
  joined = merge(rpn, middle, [(n, n) for n in list(_LEVELS) + ["cand_boxes", "cand_scores"]])
  return merge(joined, roi, [(n, n) for n in ("roi_feats", "proposals", "proposal_valid")])


def merge(first, second, io_map):
  """``onnx.compose.merge_models`` after aligning IR versions and opset imports."""
  ir_version = max(first.ir_version, second.ir_version)
  first.ir_version = second.ir_version = ir_version
  opsets = {}
  for m in (first, second):
    for o in m.opset_import:
      opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
  for m in (first, second):
    del m.opset_import[:]
    m.opset_import.extend(helper.make_opsetid(d, v) for d, v in sorted(opsets.items()))
  return onnx.compose.merge_models(first, second, io_map=io_map)


def proposals_model(*, cand_levels, num_proposals, nms_threshold, spatial_scales, output_size,
                    sampling_ratio, features, opset, canonical_scale=224.0, canonical_level=4):
  """The RPN's NMS and the multi-scale RoIAlign as an ONNX graph.

  Inputs: ``p2..p5`` float32 ``[N, h_l, w_l, F]``, ``cand_boxes`` ``[N, K, 4]``,
  ``cand_scores`` ``[N, K]`` (-1: never kept). Outputs: ``roi_feats`` ``[N, P, s, s, F]``,
  ``proposals`` ``[N, P, 4]`` (zeros past the valid ones), ``proposal_valid`` ``[N, P]`` 0/1.
  """
  nodes, inits = [], []
  k, num_levels, p = len(cand_levels), int(max(cand_levels)) + 1, int(num_proposals)

  def const(name, value, dtype=None):
    inits.append(numpy_helper.from_array(np.asarray(value, dtype), f"tsg_{name}"))
    return f"tsg_{name}"

  def op(kind, inputs, name, **attrs):
    nodes.append(helper.make_node(kind, inputs, [f"tsg_{name}"], name=f"tsg_{name}", **attrs))
    return f"tsg_{name}"

  # Each candidate in its level's score row, -1 elsewhere: NMS per level.
  onehot = (cand_levels[None, :] == np.arange(num_levels)[:, None])[None]  # [1, L, K]
  by_level = op("Where", [const("onehot", onehot), op("Unsqueeze", ["cand_scores",
                const("ax1", [1], np.int64)], "scores_u"), const("neg1", -1.0, np.float32)],
                "scores_by_level")
  selected = op("NonMaxSuppression", [
      "cand_boxes", by_level, const("max_out", [p], np.int64),
      const("iou", [nms_threshold], np.float32), const("floor", [-0.5], np.float32)], "nms")
  # kept[b, box] = 1 for the survivors (a box is in one level only: no duplicate index).
  pairs = op("Gather", [selected, const("cols", [0, 2], np.int64)], "pairs", axis=1)
  count = op("Slice", [op("Shape", [selected], "sel_shape"), const("z", [0], np.int64),
                       const("o", [1], np.int64)], "count")
  ones = op("Expand", [const("one", 1.0, np.float32), count], "ones")
  zeros = op("Mul", ["cand_scores", const("zero", 0.0, np.float32)], "zeros")
  kept = op("ScatterND", [zeros, pairs, ones], "kept")
  masked = op("Where", [op("Greater", [kept, const("half", 0.5, np.float32)], "is_kept"),
                        "cand_scores", const("neg1b", -1.0, np.float32)], "masked")
  nodes.append(helper.make_node("TopK", [masked, const("p", [p], np.int64)],
                                ["tsg_top_scores", "tsg_top_index"], name="tsg_topk", axis=1,
                                largest=1, sorted=1))
  valid_b = op("GreaterOrEqual", ["tsg_top_scores", const("zero_b", 0.0, np.float32)], "valid_b")
  nodes.append(helper.make_node("Cast", [valid_b], ["proposal_valid"], name="tsg_valid",
                                to=TensorProto.FLOAT))
  index4 = op("Expand", [op("Unsqueeze", ["tsg_top_index", const("ax2", [2], np.int64)], "idx_u"),
                         op("Concat", [op("Shape", ["tsg_top_index"], "idx_shape"),
                                       const("four", [4], np.int64)], "idx4_shape", axis=0)],
              "index4")
  boxes = op("GatherElements", ["cand_boxes", index4], "gathered", axis=1)
  nodes.append(helper.make_node("Mul", [boxes, op("Unsqueeze", ["proposal_valid",
                                                                const("ax2b", [2], np.int64)],
                                                  "valid_u")], ["proposals"], name="tsg_proposals"))
  # RoIs [N*P, 4] and their image index.
  rois = op("Reshape", ["proposals", const("r4", [-1, 4], np.int64)], "rois")
  shape_np = op("Shape", ["proposals"], "shape_np")
  n = op("Slice", [shape_np, const("z2", [0], np.int64), const("o2", [1], np.int64)], "n")
  image = op("Range", [const("r0", 0, np.int64), op("Squeeze", [n, const("ax0", [0], np.int64)],
                                                    "n_scalar"), const("r1", 1, np.int64)], "range")
  batch_index = op("Reshape", [op("Expand", [op("Unsqueeze", [image, const("ax1b", [1], np.int64)],
                                                "range_u"),
                                             op("Concat", [n, const("pp", [p], np.int64)],
                                                "np_shape", axis=0)], "image_np"),
                               const("flat", [-1], np.int64)], "batch_index")
  # FPN level rule (torchvision LevelMapper) on each RoI.
  x1, y1, x2, y2 = (op("Gather", [rois, const(f"c{i}", [i], np.int64)], f"coord{i}", axis=1)
                    for i in range(4))
  area = op("Mul", [op("Sub", [x2, x1], "w"), op("Sub", [y2, y1], "h")], "area")
  log2 = op("Div", [op("Log", [op("Div", [op("Sqrt", [area], "side"),
                                          const("s0", canonical_scale, np.float32)], "ratio")],
                       "ln"), const("ln2", math.log(2.0), np.float32)], "log2")
  k_min = round(-math.log2(spatial_scales[0]))
  k_max = round(-math.log2(spatial_scales[-1]))
  level = op("Floor", [op("Add", [log2, const("k0eps", canonical_level + 1e-6, np.float32)],
                          "level_f")], "level_floor")
  level = op("Clip", [level, const("kmin", float(k_min), np.float32),
                      const("kmax", float(k_max), np.float32)], "level_clip")  # -inf -> k_min
  level = op("Reshape", [level, const("r1111", [-1, 1, 1, 1], np.int64)], "level")
  pooled = None
  for i, scale in enumerate(spatial_scales):
    fmap = op("Transpose", [_LEVELS[i]], f"nchw{i}", perm=[0, 3, 1, 2])
    this = op("RoiAlign", [fmap, rois, batch_index], f"roialign{i}", mode="avg",
              output_height=output_size, output_width=output_size,
              sampling_ratio=sampling_ratio, spatial_scale=float(scale),
              coordinate_transformation_mode="output_half_pixel")
    if pooled is None:
      pooled = this
    else:
      is_level = op("Equal", [level, const(f"lvl{i}", float(k_min + i), np.float32)], f"is{i}")
      pooled = op("Where", [is_level, this, pooled], f"pooled{i}")
  nhwc = op("Transpose", [pooled], "pooled_nhwc", perm=[0, 2, 3, 1])
  nodes.append(helper.make_node("Reshape", [nhwc, op("Concat", [
      n, const("rest", [p, output_size, output_size, features], np.int64)], "feat_shape",
      axis=0)], ["roi_feats"], name="tsg_roi_feats"))

  f32 = TensorProto.FLOAT
  inputs = [helper.make_tensor_value_info(l, f32, ["N", None, None, features]) for l in _LEVELS]
  inputs += [helper.make_tensor_value_info("cand_boxes", f32, ["N", k, 4]),
             helper.make_tensor_value_info("cand_scores", f32, ["N", k])]
  outputs = [helper.make_tensor_value_info("roi_feats", f32,
                                           ["N", p, output_size, output_size, features]),
             helper.make_tensor_value_info("proposals", f32, ["N", p, 4]),
             helper.make_tensor_value_info("proposal_valid", f32, ["N", p])]
  graph = helper.make_graph(nodes, "jaxdet_proposals", inputs, outputs, initializer=inits)
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                            producer_name="jaxdet")
  onnx.checker.check_model(model, full_check=True)
  return model
