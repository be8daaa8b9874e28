"""ONNX graphs of models with torchvision's detection transform (the ``"rcnn"`` preprocessing):
RetinaNet and the R-CNN family, each image run at its own padded size.

torchvision resizes a photo by its min/max-size rule and pads it to a multiple of 32, so the
network's input size, and with it the anchors and the per-level candidate counts, depend on the
photo. The graph is therefore dynamic in H and W, built from pieces joined by ``onnx.compose``:

1. ``preprocess_graph.float_resize_model``: uint8 images -> normalized, resized, padded
   ``net_images`` + ``image_hw`` (the resized extent), ``box_back``, ``box_limit``;
2. the network (jax2onnx, input ``[N, 32*h, 32*w, 3]`` symbolic): per level the raw head maps
   (``RetinaNet.head_maps``; ``FasterRCNN`` features + ``rpn_maps``);
3. ``anchors_model`` (``onnx.helper``): torchvision's ``AnchorGenerator`` from the maps' shapes
   (stride = input // map, integer), the maps flattened in torchvision's order, ``level_sizes``;
4. RetinaNet: ``decode`` converted by jax2onnx with a symbolic anchor count, then the
   post-processing with a per-level top-k padded to a static candidate count
   (``postprocess_graph``, ``dynamic_levels``). Faster R-CNN: the RPN's per-level top-n (padded,
   ``rpn_top_n_model``), ``faster_rcnn.score_rpn_candidates`` (jax2onnx), the proposals' NMS and
   RoIAlign at the strides' scales (``two_stage_graph``), the RoI head and
   ``decode`` (jax2onnx), the post-processing;
5. boxes times ``box_back`` (torchvision's ``resize_boxes``), clipped to the image.

Everything after the anchors has a static size, so the JAX ``Detector`` (one program per padded
size, exact level sizes) and this graph (padded levels) select the same candidates.
"""

import jax
import jax.numpy as jnp
import numpy as np
import onnx.compose
from onnx import TensorProto, helper

from . import onnx_builder
from . import postprocess_graph
from . import preprocess_graph
from . import two_stage_graph

_BATCH = "N"
# The network input's symbolic size: multiples of 32 (torchvision pads to them), so every FPN
# level of a stride up to 32 divides it exactly.
_NET_INPUT = (_BATCH, "32*h", "32*w", 3)


def is_rcnn(detector) -> bool:
  """True for a detector with the ``"rcnn"`` preprocessing (this module's graphs)."""
  return detector.preprocess.resize == "rcnn"


def detector_model(detector, *, opset, to_onnx, include_nms=True):
  """The whole dynamic-size ONNX detector of a RetinaNet or Faster R-CNN with the ``"rcnn"``
  preprocessing.

  Args:
    detector: a `jaxdet.inference.load.Detector`.
    opset: ONNX opset (>= 18).
    to_onnx: `to_onnx(fn, specs, input_names, output_names)`, jax2onnx with the exporter's
      settings.
    include_nms: False: outputs ``boxes`` / ``scores`` before NMS (input-image pixels).

  Returns:
    ``onnx.ModelProto`` (unchecked, no metadata): input ``images`` uint8 ``[N, H, W, 3]``;
    outputs ``num_detections``, ``detection_boxes``, ``detection_scores``,
    ``detection_classes`` (or ``boxes``, ``scores``).

  Raises:
    ValueError: a family this graph does not cover.
  """
  name = str(detector.config.model.name)
  build = {"retinanet": _retinanet_network, "faster_rcnn": _faster_rcnn_network}.get(name)
  if build is None:
    raise ValueError(f"the 'rcnn' preprocessing exports RetinaNet and Faster R-CNN; got {name}")
  pre = preprocess_graph.float_resize_model(detector.preprocess, image_size=detector.image_size,
                                            opset=opset)
  network, hw_inputs = build(detector, opset=opset, to_onnx=to_onnx, include_nms=include_nms)
  io_map = [(n, n) for n in ("net_images", "box_back", "box_limit")]
  io_map += [("net_images", "an_net_images")] + [("image_hw", n) for n in hw_inputs]
  return two_stage_graph.merge(pre, network, io_map)


def _retinanet_network(detector, *, opset, to_onnx, include_nms):
  """net_images (+ image_hw, box_back, box_limit) -> the detections of a RetinaNet."""
  from jaxdet.models.detectors import retinanet
  model, variables, cfg = detector.model, detector.variables, detector.config.model
  num_levels, c = len(model.strides), model.num_classes
  maps = [f"{kind}_{i}" for i in range(num_levels) for kind in ("cls", "box")]

  def net_fn(images):
    out = model.apply(variables, images, method=lambda m, x: m.head_maps(x, train=False))
    return tuple(x + 0.0 for pair in out for x in pair)  # a node of its own for each output

  net = to_onnx(net_fn, [jax.ShapeDtypeStruct(_NET_INPUT, jnp.float32)], ["net_images"], maps)
  net = onnx.compose.add_prefix(net, "net_", rename_inputs=False, rename_outputs=False)
  cells = _cell_anchors(cfg.anchor_sizes, cfg.aspect_ratios)
  anchors = anchors_model(levels=num_levels, cell_anchors=cells,
                          flatten={"cls": c, "box": 4}, opset=opset)
  model_ = two_stage_graph.merge(net, anchors, [(m, m) for m in maps])

  def decode_fn(anchors_xyxy, deltas, logits, image_hw):
    return retinanet.decode({"anchors": anchors_xyxy, "box_deltas": deltas, "cls_logits": logits,
                             "image_hw": image_hw}, image_size=detector.image_size)

  decode = to_onnx(decode_fn, [jax.ShapeDtypeStruct(("A", 4), jnp.float32),
                               jax.ShapeDtypeStruct((_BATCH, "A", 4), jnp.float32),
                               jax.ShapeDtypeStruct((_BATCH, "A", c), jnp.float32),
                               jax.ShapeDtypeStruct((_BATCH, 2), jnp.float32)],
                   ["anchors", "box", "cls", "dec_image_hw"], ["raw_boxes", "raw_scores"])
  decode = onnx.compose.add_prefix(decode, "dec_", rename_inputs=False, rename_outputs=False)
  model_ = two_stage_graph.merge(model_, decode, [(n, n) for n in ("anchors", "box", "cls")])
  pp = detector.postprocess_args()
  if include_nms:
    tail = postprocess_graph.postprocess_model(
        num_anchors=None, num_classes=c, opset=opset, box_back=True,
        dynamic_levels=num_levels, **{k: v for k, v in pp.items() if k != "level_sizes"})
    io = [("raw_boxes", "raw_boxes"), ("raw_scores", "raw_scores"),
          ("level_sizes", "level_sizes")]
  else:
    tail = postprocess_graph.raw_outputs_model(num_anchors=None, num_classes=c, opset=opset,
                                               box_back=True)
    io = [("raw_boxes", "raw_boxes"), ("raw_scores", "raw_scores")]
  return two_stage_graph.merge(model_, tail, io), ("dec_image_hw",)


def _faster_rcnn_network(detector, *, opset, to_onnx, include_nms):
  """net_images (+ image_hw, box_back, box_limit) -> the detections of a Faster R-CNN."""
  from jaxdet.models.detectors import faster_rcnn
  model, variables = detector.model, detector.variables
  cfg = model.config
  if cfg.proposals != "rpn" or cfg.roi_pooler != "align":
    raise ValueError("the 'rcnn' preprocessing exports Faster R-CNN with its RPN and RoIAlign "
                     f"(proposals='rpn', roi_pooler='align'), got proposals={cfg.proposals!r}, "
                     f"roi_pooler={cfg.roi_pooler!r}")
  levels = two_stage_graph.LEVELS
  num_rpn = len(levels) + 1  # P2..P5 and "pool"
  rpn_maps = [f"{kind}_{i}" for i in range(num_rpn) for kind in ("obj", "rpn_box")]

  def net_fn(images):
    def run(m, x):
      feats = m.features(x, train=False)
      pairs = m.rpn_maps(feats)
      return tuple(feats[l] + 0.0 for l in levels) + tuple(y + 0.0 for p in pairs for y in p)
    return model.apply(variables, images, method=run)

  net = to_onnx(net_fn, [jax.ShapeDtypeStruct(_NET_INPUT, jnp.float32)], ["net_images"],
                list(levels) + rpn_maps)
  net = onnx.compose.add_prefix(net, "net_", rename_inputs=False, rename_outputs=False)
  cells = _cell_anchors(cfg.anchor_sizes, cfg.aspect_ratios)
  anchors = anchors_model(levels=num_rpn, cell_anchors=cells, flatten={"obj": None, "rpn_box": 4},
                          opset=opset)
  model_ = two_stage_graph.merge(net, anchors, [(m, m) for m in rpn_maps])
  k = int(cfg.rpn_pre_nms_top_n_test)
  model_ = two_stage_graph.merge(model_, rpn_top_n_model(num_levels=num_rpn, k=k, opset=opset),
                                 [(n, n) for n in ("obj", "rpn_box", "anchors", "level_sizes")])

  def score_fn(logits, deltas, anchors_xyxy, valid, image_hw):
    return faster_rcnn.score_rpn_candidates(logits, deltas, anchors_xyxy, image_size=image_hw,
                                            valid=valid > 0)

  kk = num_rpn * k
  score = to_onnx(score_fn, [jax.ShapeDtypeStruct((_BATCH, kk), jnp.float32),
                             jax.ShapeDtypeStruct((_BATCH, kk, 4), jnp.float32),
                             jax.ShapeDtypeStruct((_BATCH, kk, 4), jnp.float32),
                             jax.ShapeDtypeStruct((_BATCH, kk), jnp.float32),
                             jax.ShapeDtypeStruct((_BATCH, 2), jnp.float32)],
                  ["top_obj", "top_deltas", "top_anchors", "top_valid", "sc_image_hw"],
                  ["cand_boxes", "cand_scores"])
  score = onnx.compose.add_prefix(score, "sc_", rename_inputs=False, rename_outputs=False)
  model_ = two_stage_graph.merge(model_, score, [(n, n) for n in ("top_obj", "top_deltas",
                                                                  "top_anchors", "top_valid")])
  p = min(int(cfg.rpn_post_nms_top_n_test), kk)
  features = int(cfg.fpn_features)
  out = int(cfg.roi_output_size)
  middle = two_stage_graph.proposals_model(
      cand_levels=np.repeat(np.arange(num_rpn), k), num_proposals=p,
      nms_threshold=float(cfg.rpn_nms_threshold), features=features, opset=opset,
      # The strides' scales, whatever the input size (torchvision keeps the scales it inferred
      # from its first batch: these, for any ordinary image).
      pooling=dict(kind="align", spatial_scales=[2.0 ** -k for k in (2, 3, 4, 5)],
                   output_size=out, sampling_ratio=int(cfg.roi_sampling_ratio)))
  model_ = two_stage_graph.merge(model_, middle, [(n, n) for n in list(levels) + [
      "cand_boxes", "cand_scores"]])

  def roi_fn(roi_feats, proposals, valid, image_hw):
    logits, deltas = model.apply(variables, roi_feats, method=lambda m, x: m.roi_head(
        x, train=False))
    return faster_rcnn.decode({"proposals": proposals, "proposal_mask": valid,
                               "class_logits": logits, "box_deltas": deltas,
                               "image_hw": image_hw}, image_size=detector.image_size)

  roi = to_onnx(roi_fn, [jax.ShapeDtypeStruct((_BATCH, p, out, out, features), jnp.float32),
                         jax.ShapeDtypeStruct((_BATCH, p, 4), jnp.float32),
                         jax.ShapeDtypeStruct((_BATCH, p), jnp.float32),
                         jax.ShapeDtypeStruct((_BATCH, 2), jnp.float32)],
                ["roi_feats", "roi_boxes", "roi_valid", "roi_image_hw"],
                ["raw_boxes", "raw_scores"])
  roi = onnx.compose.add_prefix(roi, "roi_", rename_inputs=False, rename_outputs=False)
  model_ = two_stage_graph.merge(model_, roi, [(n, n) for n in ("roi_feats", "roi_boxes",
                                                                "roi_valid")])
  c = model.num_classes
  pp = detector.postprocess_args()
  common = dict(num_anchors=p, num_classes=c, opset=opset, class_specific_boxes=True,
                box_back=True)
  tail = (postprocess_graph.postprocess_model(**common, **pp) if include_nms
          else postprocess_graph.raw_outputs_model(**common))
  model_ = two_stage_graph.merge(model_, tail, [("raw_boxes", "raw_boxes"),
                                                ("raw_scores", "raw_scores")])
  return model_, ("sc_image_hw", "roi_image_hw")


def _cell_anchors(sizes, aspect_ratios):
  """Per level, torchvision's zero-centred cell anchors float32 ``[A_l, 4]``."""
  from jaxdet.ops import anchors as anchor_ops
  ratios = tuple(aspect_ratios)
  return [anchor_ops.cell_anchors_xyxy(tuple(s), ratios) for s in sizes]


def anchors_model(*, levels, cell_anchors, flatten, opset):
  """torchvision's ``AnchorGenerator`` for maps of run-time sizes, and the maps flattened.

  Inputs: ``an_net_images`` ``[N, H, W, 3]`` (the network input; its shape only) and, for each
  key ``name`` of
  ``flatten`` and level ``l``, the map ``{name}_{l}`` ``[N, h_l, w_l, A_l * k]``. Outputs:
  ``anchors`` float32 ``[A, 4]`` (levels in order; locations row-major; cell anchors inner; a
  level's stride is ``H // h_l`` and ``W // w_l``, integer, as torchvision), ``level_sizes`` int64
  ``[L]`` and ``{name}`` ``[N, A, k]`` (``[N, A]`` for ``k=None``), the maps concatenated.
  """
  nodes, inits, const, op = onnx_builder.builder("an_")

  i64, f32 = TensorProto.INT64, TensorProto.FLOAT
  first = next(iter(flatten))
  image_hw = op("Slice", [op("Shape", ["an_net_images"], "an_net_shape"), const("1", [1], np.int64),
                          const("3", [3], np.int64)], "an_image_hw")
  parts, sizes = [], []
  for l in range(levels):
    hw = op("Slice", [op("Shape", [f"{first}_{l}"], f"an_shape{l}"), const(f"1_{l}", [1], np.int64),
                      const(f"3_{l}", [3], np.int64)], f"an_hw{l}")
    stride = op("Div", [image_hw, hw], f"an_stride{l}")  # [2] int64: (H // h, W // w)
    axes = []
    for k, axis in ((0, "y"), (1, "x")):
      at = const(f"k{l}{axis}", k, np.int64)
      size = op("Gather", [hw, at], f"an_{axis}{l}_size", axis=0)
      axes.append(op("Mul", [op("Range", [const(f"r0{l}{axis}", 0, np.int64), size,
                                          const(f"r1{l}{axis}", 1, np.int64)], f"an_{axis}{l}_i"),
                             op("Gather", [stride, at], f"an_{axis}{l}_stride", axis=0)],
                     f"an_{axis}{l}_shift"))
    grid = op("Concat", [op("Unsqueeze", [op("Gather", [hw, const(f"k0{l}", 0, np.int64)],
                                             f"an_h{l}"), const(f"ax{l}", [0], np.int64)],
                            f"an_h{l}_1"),
                         op("Unsqueeze", [op("Gather", [hw, const(f"k1{l}", 1, np.int64)],
                                             f"an_w{l}"), const(f"axw{l}", [0], np.int64)],
                            f"an_w{l}_1")], f"an_grid{l}", axis=0)
    ys = op("Expand", [op("Unsqueeze", [axes[0], const(f"u1{l}", [1], np.int64)], f"an_ys{l}"),
                       grid], f"an_shift_y{l}")
    xs = op("Expand", [op("Unsqueeze", [axes[1], const(f"u0{l}", [0], np.int64)], f"an_xs{l}"),
                       grid], f"an_shift_x{l}")
    flat = [op("Reshape", [t, const(f"m1{l}{i}", [-1, 1], np.int64)], f"an_flat{l}_{i}")
            for i, t in enumerate((xs, ys))]
    shifts = op("Cast", [op("Concat", [flat[0], flat[1], flat[0], flat[1]], f"an_shifts{l}_i",
                            axis=1)], f"an_shifts{l}", to=f32)  # [h*w, 4], x y x y
    cell = const(f"cell{l}", np.asarray(cell_anchors[l], np.float32)[None], np.float32)
    level = op("Add", [op("Unsqueeze", [shifts, const(f"u{l}", [1], np.int64)], f"an_s{l}_u"),
               cell], f"an_level{l}")
    parts.append(op("Reshape", [level, const(f"r4{l}", [-1, 4], np.int64)], f"an_anchors{l}"))
    sizes.append(op("Slice", [op("Shape", [parts[-1]], f"an_count_shape{l}"),
                              const(f"z{l}", [0], np.int64), const(f"o{l}", [1], np.int64)],
                    f"an_count{l}"))
  op("Concat", parts, "anchors", axis=0)
  op("Concat", sizes, "level_sizes", axis=0)
  inputs = [helper.make_tensor_value_info("an_net_images", f32, [_BATCH, None, None, 3])]
  outputs = [helper.make_tensor_value_info("anchors", f32, ["A", 4]),
             helper.make_tensor_value_info("level_sizes", i64, [levels])]
  for name, k in flatten.items():
    shape = [0, -1] if k is None else [0, -1, k]
    flat = [op("Reshape", [f"{name}_{l}", const(f"{name}_shape{l}", shape, np.int64)],
               f"an_{name}_flat{l}") for l in range(levels)]
    op("Concat", flat, name, axis=1)
    inputs += [helper.make_tensor_value_info(f"{name}_{l}", f32, [_BATCH, None, None, None])
               for l in range(levels)]
    outputs.append(helper.make_tensor_value_info(name, f32, [_BATCH, "A"] + (
        [] if k is None else [k])))
  graph = helper.make_graph(nodes, "jaxdet_anchors", inputs, outputs, initializer=inits)
  return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                           producer_name="jaxdet")


def rpn_top_n_model(*, num_levels, k, opset):
  """The RPN's per-level top-n of ``faster_rcnn.rpn_candidates`` for run-time level sizes.

  Inputs: ``obj`` float32 ``[N, A]`` logits, ``rpn_box`` ``[N, A, 4]``, ``anchors`` ``[A, 4]``,
  ``level_sizes`` int64 ``[L]``. Each level's logits are padded with ``k`` entries of -inf
  (invalid slots) and ``TopK(k)`` taken, so a level with fewer anchors yields them all and then
  invalid slots. Outputs ``[N, L*k]`` ``top_obj``, ``top_valid`` (1/0), and ``top_deltas``,
  ``top_anchors`` ``[N, L*k, 4]`` of the selected anchors (anchor 0 for invalid slots).
  """
  nodes, inits, const, op = onnx_builder.builder("tn_")

  f32 = TensorProto.FLOAT
  ends = op("CumSum", ["level_sizes", const("axis0", 0, np.int64)], "tn_ends")
  starts = op("Sub", [ends, "level_sizes"], "tn_starts")
  rows = op("Slice", [op("Shape", ["obj"], "tn_shape"), const("0", [0], np.int64),
                      const("1", [1], np.int64)], "tn_rows")
  pad = op("Expand", [const("pad", np.full((1, k), -np.inf, np.float32), np.float32),
                      op("Concat", [rows, const("k", [k], np.int64)], "tn_pad_shape", axis=0)],
           "tn_pad_block")
  scores, indices, valid = [], [], []
  for i in range(num_levels):
    at = const(f"at{i}", [i], np.int64)
    lo = op("Gather", [starts, at], f"tn_lo{i}", axis=0)
    hi = op("Gather", [ends, at], f"tn_hi{i}", axis=0)
    part = op("Slice", ["obj", lo, hi, const(f"axis1_{i}", [1], np.int64)], f"tn_part{i}")
    nodes.append(helper.make_node("TopK", [op("Concat", [part, pad], f"tn_padded{i}", axis=1),
                                           const(f"k{i}", [k], np.int64)],
                                  [f"tn_s{i}", f"tn_i{i}"], name=f"tn/topk{i}", axis=-1,
                                  largest=1, sorted=1))
    real = op("Less", [f"tn_i{i}", op("Sub", [hi, lo], f"tn_len{i}")], f"tn_real{i}")
    valid.append(real)
    scores.append(op("Where", [real, f"tn_s{i}", const(f"zero{i}", 0.0, np.float32)],
                     f"tn_score{i}"))
    indices.append(op("Where", [real, op("Add", [f"tn_i{i}", lo], f"tn_flat{i}"),
                                const(f"zi{i}", 0, np.int64)], f"tn_index{i}"))
  index = op("Concat", indices, "tn_index", axis=1)  # [N, L*k]
  op("Concat", scores, "top_obj", axis=1)
  op("Cast", [op("Concat", valid, "tn_valid", axis=1)], "top_valid", to=f32)
  index4 = op("Expand", [op("Unsqueeze", [index, const("ax2", [2], np.int64)], "tn_index_u"),
                         op("Concat", [op("Shape", [index], "tn_index_shape"),
                                       const("four", [4], np.int64)], "tn_index_xyxy_shape", axis=0)],
              "tn_index_xyxy")
  op("GatherElements", ["rpn_box", index4], "top_deltas", axis=1)
  op("Gather", ["anchors", index], "top_anchors", axis=0)
  kk = num_levels * k
  graph = helper.make_graph(
      nodes, "jaxdet_rpn_top_n",
      [helper.make_tensor_value_info("obj", f32, [_BATCH, "A"]),
       helper.make_tensor_value_info("rpn_box", f32, [_BATCH, "A", 4]),
       helper.make_tensor_value_info("anchors", f32, ["A", 4]),
       helper.make_tensor_value_info("level_sizes", TensorProto.INT64, [num_levels])],
      [helper.make_tensor_value_info("top_obj", f32, [_BATCH, kk]),
       helper.make_tensor_value_info("top_deltas", f32, [_BATCH, kk, 4]),
       helper.make_tensor_value_info("top_anchors", f32, [_BATCH, kk, 4]),
       helper.make_tensor_value_info("top_valid", f32, [_BATCH, kk])],
      initializer=inits)
  return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                           producer_name="jaxdet")
