"""The model's resize rule (DESIGN.md) as an ONNX graph, for exports with a dynamic image size.

The normalization (``config.model.preprocess`` mean, std, value_range) is not here: it is part of
``Detector.forward`` and converted with the network. This graph fits ``[N, H, W, 3]`` uint8 images
to the ``S x S`` network input as ``jaxdet.data.preprocess.resize_to_input`` does:

- ``"letterbox"`` mirrors ``letterbox_image``: ``scale = S / max(h, w)``,
  ``new = min(S, max(1, round(side * scale)))`` computed in float64 as Python does, a bilinear
  resize, then zero padding on the right and bottom in uint8 space;
- ``"stretch"`` mirrors ``stretch_image``: a bilinear resize to ``S x S``, ``sx = S / w``,
  ``sy = S / h``.

The resize is ONNX ``Resize`` (linear, antialiased, half-pixel: the closest ONNX mode to PIL's
bilinear, equal within rounding on natural images).
"""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from . import onnx_builder


def letterbox_model(*, image_size, opset, batch_dim="N"):
  """``resize_model(..., resize="letterbox")``."""
  return resize_model(image_size=image_size, opset=opset, batch_dim=batch_dim, resize="letterbox")


def resize_model(*, image_size, opset, batch_dim="N", resize="letterbox", num_proposals=None,
                 antialias=True):
  """Builds the resize ONNX model.

  Args:
    image_size: S, the square network input side.
    opset: ONNX opset of the default domain (>= 18, for ``Resize(antialias=1, axes=...)``).
    batch_dim: symbolic name of the batch dimension.
    resize: the model's rule, ``"letterbox"`` or ``"stretch"``.
    num_proposals: P of a Fast R-CNN graph: adds the input ``proposals`` float32 ``[N, P, 4]``
      (xyxy input-image pixels) and the output ``letterboxed_proposals`` (times ``box_scale``:
      network pixels, as the images; top-left letterbox, so no offset).
    antialias: antialiased ``Resize`` (PIL's bilinear when shrinking); False for OpenCV's
      ``INTER_LINEAR`` (its fixed-point rounding aside).

  Returns:
    ``onnx.ModelProto`` with input ``images`` uint8 ``[N, H, W, 3]`` and outputs
    ``letterboxed_images`` uint8 ``[N, S, S, 3]`` (the name is kept for both rules),
    ``box_scale`` float32 ``[4]`` (``sx, sy, sx, sy`` = network pixels per input pixel) and
    ``box_limit`` float32 ``[4]`` (``w, h, w, h``).
  """
  if opset < 18:
    raise ValueError(f"a dynamic image size needs opset >= 18 (antialiased Resize), got {opset}")
  if resize not in ("letterbox", "stretch"):
    raise ValueError(f"resize must be 'letterbox' or 'stretch', got {resize!r}")
  size = int(image_size)
  nodes, inits = [], []

  def const(name, value, dtype):
    inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
    return name

  def op(op_type, inputs, outputs, **attrs):
    nodes.append(helper.make_node(op_type, inputs, outputs, name=f"lb/{outputs[0]}", **attrs))
    return outputs[0]

  shape = op("Shape", ["images"], ["lb_shape"])
  hw = op("Slice", [shape, const("lb_1", [1], np.int64), const("lb_3", [3], np.int64)], ["lb_hw"])
  hw_f64 = op("Cast", [hw], ["lb_hw_f64"], to=TensorProto.DOUBLE)
  if resize == "letterbox":
    longest = op("ReduceMax", [hw_f64], ["lb_longest"], keepdims=1)
    scale = op("Div", [const("lb_size_f64", [size], np.float64), longest], ["lb_scale"])
    # Python: min(S, max(1, int(round(side * scale)))); Round is half-to-even like Python's.
    new_hw = op("Round", [op("Mul", [hw_f64, scale], ["lb_hw_scaled"])], ["lb_new_hw_f64"])
    new_hw = op("Clip", [new_hw, const("lb_one_f64", 1.0, np.float64),
                         const("lb_size_scalar_f64", float(size), np.float64)],
                ["lb_new_hw_clip"])
  else:  # stretch: always S x S
    new_hw = const("lb_new_hw_clip", [float(size), float(size)], np.float64)
  new_hw_i64 = op("Cast", [new_hw], ["lb_new_hw"], to=TensorProto.INT64)

  pixels = op("Cast", ["images"], ["lb_pixels"], to=TensorProto.FLOAT)
  resized = op("Resize", [pixels, "", "", new_hw_i64], ["lb_resized"], mode="linear",
               antialias=int(bool(antialias)),
               axes=[1, 2], coordinate_transformation_mode="half_pixel")
  resized = op("Clip", [op("Round", [resized], ["lb_rounded"]), const("lb_0f", 0.0, np.float32),
                        const("lb_255f", 255.0, np.float32)], ["lb_clipped"])
  if resize == "letterbox":
    resized = op("Cast", [resized], ["lb_resized_u8"], to=TensorProto.UINT8)
    # Pads [0, 0, 0, 0, 0, S - new_h, S - new_w, 0].
    room = op("Sub", [const("lb_size_i64", [size, size], np.int64), new_hw_i64], ["lb_room"])
    pads = op("Concat", [const("lb_pads_head", [0, 0, 0, 0, 0], np.int64), room,
                         const("lb_pads_tail", [0], np.int64)], ["lb_pads"], axis=0)
    op("Pad", [resized, pads], ["letterboxed_images"], mode="constant")
  else:
    op("Cast", [resized], ["letterboxed_images"], to=TensorProto.UINT8)

  # sx = new_w / w, sy = new_h / h (float64 as Python, stored as float32 as Detector.predict).
  ratio = op("Div", [new_hw, hw_f64], ["lb_ratio_hw"])  # [sy, sx]
  wh_order = const("lb_wh_order", [1, 0, 1, 0], np.int64)
  scale_xyxy = op("Gather", [ratio, wh_order], ["lb_scale_f64"], axis=0)
  op("Cast", [scale_xyxy], ["box_scale"], to=TensorProto.FLOAT)
  op("Cast", [op("Gather", [hw_f64, wh_order], ["lb_limit_f64"], axis=0)], ["box_limit"],
     to=TensorProto.FLOAT)

  n = batch_dim
  inputs = [helper.make_tensor_value_info("images", TensorProto.UINT8, [n, "H", "W", 3])]
  outputs = [helper.make_tensor_value_info("letterboxed_images", TensorProto.UINT8,
                                           [n, size, size, 3]),
             helper.make_tensor_value_info("box_scale", TensorProto.FLOAT, [4]),
             helper.make_tensor_value_info("box_limit", TensorProto.FLOAT, [4])]
  if num_proposals is not None:
    op("Mul", ["proposals", "box_scale"], ["letterboxed_proposals"])
    inputs.append(helper.make_tensor_value_info("proposals", TensorProto.FLOAT,
                                                [n, int(num_proposals), 4]))
    outputs.append(helper.make_tensor_value_info("letterboxed_proposals", TensorProto.FLOAT,
                                                 [n, int(num_proposals), 4]))
  graph = helper.make_graph(nodes, "jaxdet_letterbox", inputs=inputs, outputs=outputs,
                            initializer=inits)
  return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                           producer_name="jaxdet")


def float_resize_model(pre, *, image_size, opset, batch_dim="N"):
  """The float preprocessing of torchvision's models (`jaxdet.data.preprocess.network_input`
  with ``interpolation="torch"``) as an ONNX graph, op for op as the NumPy code.

  uint8 images -> float32 -> normalized (``x * gain + bias``, the float32 constants of
  ``normalize_image``) -> ``F.interpolate`` bilinear (``align_corners=False``, no antialias; the
  two taps per axis computed as ``torch_source_index``, gathered rows then columns) to the
  rule's size -> padded: the ``"stretch"`` rule gives S x S; the ``"rcnn"`` rule resizes by
  torchvision's min/max sizes (float64, floored) and pads with zeros to a multiple of
  ``size_divisible`` (a dynamic size).

  Args:
    pre: the model's ``jaxdet.data.preprocess.Preprocess`` (``interpolation="torch"``,
      ``resize`` "stretch" or "rcnn").
    image_size: S (the "stretch" rule's output side).
    opset: ONNX opset (>= 18).
    batch_dim: symbolic name of the batch dimension.

  Returns:
    ``onnx.ModelProto``: input ``images`` uint8 ``[N, H, W, 3]``; outputs ``net_images`` float32
    ``[N, Hc, Wc, 3]``, ``image_hw`` float32 ``[N, 2]`` (the resized extent ``(new_h, new_w)``
    of every image), ``box_back`` float32 ``[4]`` (``w / new_w, h / new_h`` twice, in float32:
    torchvision's ``resize_boxes`` ratios) and ``box_limit`` float32 ``[4]`` (``w, h, w, h``).
  """
  from jaxdet.data import preprocess  # pylint: disable=g-import-not-at-top
  if pre.interpolation != "torch" or pre.resize not in ("stretch", "rcnn"):
    raise ValueError(f"the float preprocessing graph is for interpolation='torch' with resize "
                     f"'stretch' or 'rcnn', got {pre.interpolation!r} / {pre.resize!r}")
  nodes, inits, const, op = onnx_builder.builder("fr_")
  i64, f32, f64 = TensorProto.INT64, TensorProto.FLOAT, TensorProto.DOUBLE
  hw = op("Slice", [op("Shape", ["images"], "fr_shape"), const("1", [1], np.int64),
                    const("3", [3], np.int64)], "fr_hw")
  hw_f64 = op("Cast", [hw], "fr_hw_f64", to=f64)
  if pre.resize == "rcnn":  # min(min_size / min(h, w), max_size / max(h, w)), int(side * scale)
    scale = op("Min", [op("Div", [const("min_size", [pre.min_size], np.float64),
                                  op("ReduceMin", [hw_f64], "fr_short", keepdims=1)], "fr_s1"),
                       op("Div", [const("max_size", [pre.max_size], np.float64),
                                  op("ReduceMax", [hw_f64], "fr_long", keepdims=1)], "fr_s2")],
               "fr_scale")
    new_f64 = op("Max", [op("Floor", [op("Mul", [hw_f64, scale], "fr_scaled")], "fr_floor"),
                         const("one_f64", 1.0, np.float64)], "fr_new_f64")
    new = op("Cast", [new_f64], "fr_new", to=i64)
  else:
    new = const("new", [image_size, image_size], np.int64)
  gain, bias = preprocess._affine(pre)  # pylint: disable=protected-access
  pixels = op("Add", [op("Mul", [op("Cast", ["images"], "fr_pixels", to=f32),
                                 const("gain", gain, np.float32)], "fr_times_gain"),
                      const("bias", bias, np.float32)], "fr_normalized")
  resized = pixels
  for axis, name in ((1, "rows"), (2, "cols")):  # rows first, as `torch_bilinear`
    resized = _torch_axis(op, const, resized, hw, new, axis=axis, name=name)
  net = resized
  if pre.resize == "rcnn":  # zeros (after normalization) to a multiple of size_divisible
    d = const("div", [pre.size_divisible], np.int64)
    padded = op("Mul", [op("Div", [op("Add", [new, op("Sub", [d, const("one", [1], np.int64)],
                                                          "fr_d1")], "fr_up"), d], "fr_blocks"),
                        d], "fr_padded")
    room = op("Sub", [padded, new], "fr_room")
    pads = op("Concat", [const("pad_head", [0, 0, 0, 0, 0], np.int64), room,
                         const("pad_tail", [0], np.int64)], "fr_pads", axis=0)
    net = op("Pad", [resized, pads, const("zero_f", 0.0, np.float32)], "fr_pad", mode="constant")
  op("Identity", [net], "net_images")
  new_f32 = op("Cast", [new], "fr_new_f32", to=f32)
  n = op("Slice", [op("Shape", ["images"], "fr_shape_n"), const("0", [0], np.int64),
                   const("1b", [1], np.int64)], "fr_n")
  op("Expand", [op("Unsqueeze", [new_f32, const("ax0", [0], np.int64)], "fr_new_row"),
                op("Concat", [n, const("two", [2], np.int64)], "fr_hw_shape", axis=0)],
     "image_hw")
  hw_f32 = op("Cast", [hw], "fr_hw_f32", to=f32)
  wh_order = const("wh_order", [1, 0, 1, 0], np.int64)
  op("Gather", [op("Div", [hw_f32, new_f32], "fr_back_hw"), wh_order], "box_back", axis=0)
  op("Gather", [hw_f32, wh_order], "box_limit", axis=0)
  side = image_size if pre.resize == "stretch" else None
  graph = helper.make_graph(
      nodes, "jaxdet_float_preprocess",
      inputs=[helper.make_tensor_value_info("images", TensorProto.UINT8,
                                            [batch_dim, "H", "W", 3])],
      outputs=[helper.make_tensor_value_info("net_images", f32, [batch_dim, side, side, 3]),
               helper.make_tensor_value_info("image_hw", f32, [batch_dim, 2]),
               helper.make_tensor_value_info("box_back", f32, [4]),
               helper.make_tensor_value_info("box_limit", f32, [4])],
      initializer=inits)
  return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                           producer_name="jaxdet")


def _torch_axis(op, const, x, hw, new, *, axis, name):
  """``F.interpolate``'s bilinear along one axis (1: rows, 2: columns) of ``x [N, H, W, C]``:
  the taps and weights of ``torch_source_index`` (float32 scale, the source coordinate rounded
  once from float64 as ATen's fused multiply-add), then ``w0 * x[i0] + w1 * x[i1]``."""
  i64, f32, f64 = TensorProto.INT64, TensorProto.FLOAT, TensorProto.DOUBLE
  k = axis - 1
  size_in = op("Gather", [hw, const(f"{name}_k", k, np.int64)], f"fr_{name}_in", axis=0)
  size_out = op("Gather", [new, const(f"{name}_k2", k, np.int64)], f"fr_{name}_out", axis=0)
  scale = op("Div", [op("Cast", [size_in], f"fr_{name}_in_f", to=f32),
                     op("Cast", [size_out], f"fr_{name}_out_f", to=f32)], f"fr_{name}_scale")
  centres = op("Add", [op("Cast", [op("Range", [const(f"{name}_r0", 0, np.int64), size_out,
                                                const(f"{name}_r1", 1, np.int64)],
                                      f"fr_{name}_range")], f"fr_{name}_range_f", to=f32),
                       const(f"{name}_half", 0.5, np.float32)], f"fr_{name}_centres")
  real64 = op("Sub", [op("Mul", [op("Cast", [scale], f"fr_{name}_scale64", to=f64),
                                 op("Cast", [centres], f"fr_{name}_centres64", to=f64)],
                         f"fr_{name}_prod64"), const(f"{name}_half64", 0.5, np.float64)],
              f"fr_{name}_real64")
  real = op("Max", [op("Cast", [real64], f"fr_{name}_real32", to=f32),
                    const(f"{name}_zero", 0.0, np.float32)], f"fr_{name}_real")
  last = op("Sub", [size_in, const(f"{name}_one", 1, np.int64)], f"fr_{name}_last")
  i0 = op("Min", [op("Cast", [op("Floor", [real], f"fr_{name}_floor")], f"fr_{name}_floor_i",
                     to=i64), last], f"fr_{name}_i0")
  w1 = op("Clip", [op("Sub", [real, op("Cast", [i0], f"fr_{name}_i0_f", to=f32)],
                      f"fr_{name}_frac"), const(f"{name}_lo", 0.0, np.float32),
                   const(f"{name}_hi", 1.0, np.float32)], f"fr_{name}_w1")
  w0 = op("Sub", [const(f"{name}_onef", 1.0, np.float32), w1], f"fr_{name}_w0")
  i1 = op("Where", [op("Less", [i0, last], f"fr_{name}_inner"),
                    op("Add", [i0, const(f"{name}_one2", 1, np.int64)], f"fr_{name}_next"), i0],
          f"fr_{name}_i1")
  shape = [-1, 1, 1] if axis == 1 else [-1, 1]  # weights broadcast along their axis
  w0 = op("Reshape", [w0, const(f"{name}_wshape0", shape, np.int64)], f"fr_{name}_w0r")
  w1 = op("Reshape", [w1, const(f"{name}_wshape1", shape, np.int64)], f"fr_{name}_w1r")
  if axis == 1:  # rows: x[i0] * w0 + x[i1] * w1 happens after the columns (torch_bilinear)
    return (op("Gather", [x, i0], f"fr_{name}_top", axis=1),
            op("Gather", [x, i1], f"fr_{name}_bottom", axis=1), w0, w1)
  top, bottom, a0, a1 = x
  rows = []
  for part, label in ((top, "t"), (bottom, "b")):
    left = op("Gather", [part, i0], f"fr_{label}_left", axis=2)
    right = op("Gather", [part, i1], f"fr_{label}_right", axis=2)
    rows.append(op("Add", [op("Mul", [left, w0], f"fr_{label}_lw"),
                           op("Mul", [right, w1], f"fr_{label}_rw")], f"fr_{label}_row"))
  return op("Add", [op("Mul", [rows[0], a0], "fr_top_w"), op("Mul", [rows[1], a1], "fr_bottom_w")],
            "fr_resized")
