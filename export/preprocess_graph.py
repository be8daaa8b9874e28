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


def letterbox_model(*, image_size, opset, batch_dim="N"):
  """``resize_model(..., resize="letterbox")``."""
  return resize_model(image_size=image_size, opset=opset, batch_dim=batch_dim, resize="letterbox")


def resize_model(*, image_size, opset, batch_dim="N", resize="letterbox", num_proposals=None):
  """Builds the resize ONNX model.

  Args:
    image_size: S, the square network input side.
    opset: ONNX opset of the default domain (>= 18, for ``Resize(antialias=1, axes=...)``).
    batch_dim: symbolic name of the batch dimension.
    resize: the model's rule, ``"letterbox"`` or ``"stretch"``.
    num_proposals: P of a Fast R-CNN graph: adds the input ``proposals`` float32 ``[N, P, 4]``
      (xyxy input-image pixels) and the output ``letterboxed_proposals`` (times ``box_scale``:
      network pixels, as the images; top-left letterbox, so no offset).

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
  resized = op("Resize", [pixels, "", "", new_hw_i64], ["lb_resized"], mode="linear", antialias=1,
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
