"""`export_onnx`: a jaxdet `Detector` as one self-contained ONNX detector.

Graph: uint8 ``images`` -> [the model's resize rule (letterbox or stretch), when the image size
is dynamic] -> ``Detector.forward`` (the model's normalization + model + decode, converted by
jax2onnx) -> post-processing with ONNX ``TopK`` +
``NonMaxSuppression`` (``postprocess_graph``) -> ``num_detections``, ``detection_boxes``,
``detection_scores``, ``detection_classes``. The pieces are joined with ``onnx.compose``.
"""

import dataclasses
import functools
import logging
import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnx.compose

from . import metadata as metadata_lib
from . import postprocess_graph
from . import preprocess_graph
from . import rcnn_graph
from . import two_stage_graph
from jaxdet.models.postprocess import check_layout

DEFAULT_OPSET = 21
MIN_OPSET = 18  # antialiased Resize (dynamic image size); jax2onnx's own ops need no more.
MAX_OPSET = 23  # the newest opset jax2onnx 0.17 emits.
_BATCH = "N"


def export_onnx(detector, path, *, image_size=None, max_detections=None, score_threshold=None,
                iou_threshold=None, pre_nms_top_k=None, opset=None, dynamic_image_size=False,
                fp16=False, include_nms=True, checkpoint_step=None, checkpoint_kind=None,
                num_proposals=None):
  """Exports a detector to ONNX with preprocessing and NMS inside the graph.

  Args:
    detector: a `jaxdet.inference.load.Detector` (``forward``, ``image_size``, ``class_names``,
      ``postprocess``, ``config``).
    path: where to write the ``.onnx`` file (parent folders are created); None writes nothing.
    image_size: S of the exported network input (default: the detector's).
    max_detections: K, detection slots per image (default: the detector's postprocess).
    score_threshold: baked score threshold (default: the detector's).
    iou_threshold: baked NMS IoU threshold (default: the detector's).
    pre_nms_top_k: candidates entering NMS (default: the detector's).
    opset: ONNX opset, 18..23 (default 21).
    dynamic_image_size: accept ``[N, H, W, 3]`` of any H, W and resize inside the graph by the
      model's rule (``config.model.preprocess.resize``); else the input is ``[N, S, S, 3]``.
      Always on for the models that resize float pixels (``interpolation="torch"``:
      torchvision's), whose graphs hold the preprocessing op for op (``"rcnn"``: the network
      runs at each batch's own padded size, `rcnn_graph`).
    fp16: run the network in float16 from its first convolution on (onnxconverter-common;
      constants are clamped to the float16 range, e.g. -inf pooling pads become -1e4); the uint8
      input, normalization, post-processing and outputs keep their dtypes.
    include_nms: False outputs the raw decoded ``boxes [N, A, 4]`` and ``scores [N, A, C]``
      instead of the detections.
    checkpoint_step: training step of the detector's weights, recorded in the metadata.
    checkpoint_kind: ``"best"`` or ``"latest"``, recorded in the metadata.
    num_proposals: P, the static proposal count of a Fast R-CNN (``faster_rcnn`` with
      proposals="external") graph (default: its ``rpn_post_nms_top_n_test``); only for those.

  Returns:
    The ``onnx.ModelProto`` (also written to ``path``). Inputs: ``images`` uint8
    ``[N, S, S, 3]`` (or ``[N, H, W, 3]``). Outputs: ``num_detections`` int64 ``[N]``,
    ``detection_boxes`` float32 ``[N, K, 4]`` xyxy input-image pixels, ``detection_scores``
    float32 ``[N, K]``, ``detection_classes`` int64 ``[N, K]``, zero past ``num_detections``
    (or ``boxes`` / ``scores`` with ``include_nms=False``). A Fast R-CNN graph has a second
    input ``proposals`` float32 ``[N, P, 4]`` xyxy in the pixels of ``images`` (rows with a
    non-finite coordinate are padding).

  Raises:
    ValueError: a setting is out of range.
  """
  opset = DEFAULT_OPSET if opset is None else int(opset)
  if not MIN_OPSET <= opset <= MAX_OPSET:
    raise ValueError(f"opset must be in [{MIN_OPSET}, {MAX_OPSET}], got {opset}")
  pp = dict(detector.postprocess)
  for key, value in (("max_detections", max_detections), ("score_threshold", score_threshold),
                     ("iou_threshold", iou_threshold), ("pre_nms_top_k", pre_nms_top_k)):
    if value is not None:
      pp[key] = value
  size = detector.image_size if image_size is None else image_size
  if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
    raise ValueError(f"image_size must be a positive integer, got {size!r}")
  size = int(size)
  # `forward` decodes for `detector.image_size`; the postprocess reads the same settings as
  # `Detector.predict` (with `level_sizes` for this S, added before the check needs them).
  detector = dataclasses.replace(detector, image_size=size, postprocess=pp)
  pre = _preprocess(detector)
  if pre.resize == "rcnn":  # level sizes depend on each input: the graph computes them
    postprocess_graph.check_postprocess_params(**pp, level_sizes=(1,))
  else:
    pp = detector.postprocess_args()
    postprocess_graph.check_postprocess_params(**pp)
  resize = pre.resize
  if pre.interpolation == "torch":  # the preprocessing is float: always in the graph
    if fp16:
      raise ValueError("fp16 export is not supported for models with torchvision's float "
                       "preprocessing (model.preprocess.interpolation='torch')")
    if num_proposals is not None:
      raise ValueError("num_proposals is only for Fast R-CNN models")
    model = _float_preprocess_detector(detector, pp, opset=opset, include_nms=include_nms)
    return finish_model(model, _metadata(detector, pp, size=size, dynamic_image_size=True,
                                         include_nms=include_nms, fp16=fp16,
                                         checkpoint_step=checkpoint_step,
                                         checkpoint_kind=checkpoint_kind), path)

  external = two_stage_graph.needs_proposals(detector)
  model = _network_model(detector, size=size, opset=opset, fp16=fp16,
                         input_name="letterboxed_images" if dynamic_image_size else "images",
                         num_proposals=num_proposals,
                         proposals_name="letterboxed_proposals" if dynamic_image_size
                         else "proposals")
  num_anchors, num_classes, class_specific = _raw_output_dims(model)
  if num_classes != len(detector.class_names):
    raise ValueError(f"the model predicts {num_classes} classes but the detector has "
                     f"{len(detector.class_names)} class names")
  common = dict(num_anchors=num_anchors, num_classes=num_classes, opset=opset, image_size=size,
                dynamic_image_size=dynamic_image_size, batch_dim=_BATCH,
                class_specific_boxes=class_specific)
  tail = (postprocess_graph.postprocess_model(**common, **pp) if include_nms
          else postprocess_graph.raw_outputs_model(**common))
  model = _merge(model, tail, [("raw_boxes", "raw_boxes"), ("raw_scores", "raw_scores")])
  if dynamic_image_size:
    p = _input_dims(model, "letterboxed_proposals")[1] if external else None
    head = preprocess_graph.resize_model(image_size=size, opset=opset, batch_dim=_BATCH,
                                         resize=resize, num_proposals=p,
                                         antialias=pre.interpolation == "pil")
    io_map = [(n, n) for n in ("letterboxed_images", "box_scale", "box_limit")]
    model = _merge(head, model, io_map + ([("letterboxed_proposals", "letterboxed_proposals")]
                                          if external else []))
  return finish_model(model, _metadata(detector, pp, size=size,
                                       dynamic_image_size=dynamic_image_size,
                                       include_nms=include_nms, fp16=fp16,
                                       checkpoint_step=checkpoint_step,
                                       checkpoint_kind=checkpoint_kind), path)


def _metadata(detector, pp, *, size, dynamic_image_size, include_nms, fp16, checkpoint_step,
              checkpoint_kind):
  pre = _preprocess(detector)
  return metadata_lib.ExportMetadata(
      class_names=tuple(detector.class_names), input_size=size,
      dynamic_image_size=bool(dynamic_image_size), model_name=_model_name(detector),
      score_threshold=float(pp["score_threshold"]), iou_threshold=float(pp["iou_threshold"]),
      max_detections=int(pp["max_detections"]), pre_nms_top_k=int(pp["pre_nms_top_k"]),
      pre_nms_top_k_per_level=bool(pp["pre_nms_top_k_per_level"]), resize=pre.resize,
      interpolation=pre.interpolation,
      pre_nms_top_k_per_class=bool(pp.get("pre_nms_top_k_per_class", False)),
      include_nms=bool(include_nms), fp16=bool(fp16), jaxdet_version=_jaxdet_version(),
      checkpoint_step=-1 if checkpoint_step is None else int(checkpoint_step),
      checkpoint_kind=checkpoint_kind or "")


def _float_preprocess_detector(detector, pp, *, opset, include_nms):
  """The graph of a model with torchvision's float preprocessing: the resize in the graph, then
  the network (a fixed S x S one for "stretch", a dynamic one for "rcnn"), boxes mapped back by
  torchvision's ratios."""
  to_onnx = functools.partial(_to_onnx, opset=opset)
  _import_converter_plugins()
  _fix_max_pool_padding()
  if rcnn_graph.is_rcnn(detector):
    model = rcnn_graph.detector_model(detector, opset=opset, to_onnx=to_onnx,
                                      include_nms=include_nms)
  else:
    if two_stage_graph.is_two_stage(detector):
      raise ValueError("a faster_rcnn model with interpolation='torch' exports with the 'rcnn' "
                       "resize rule only")
    size = detector.image_size
    head = preprocess_graph.float_resize_model(detector.preprocess, image_size=size,
                                               opset=opset)
    boxes, scores = jax.eval_shape(detector.forward_normalized, jax.ShapeDtypeStruct(
        (1, size, size, 3), jnp.float32))
    check_layout(boxes.shape, scores.shape)
    net = to_onnx(detector.forward_normalized,
                  [jax.ShapeDtypeStruct((_BATCH, size, size, 3), jnp.float32)], ["net_images"],
                  ["raw_boxes", "raw_scores"])
    num_anchors, num_classes, class_specific = _raw_output_dims(net)
    common = dict(num_anchors=num_anchors, num_classes=num_classes, opset=opset,
                  batch_dim=_BATCH, class_specific_boxes=class_specific, box_back=True)
    tail = (postprocess_graph.postprocess_model(**common, **pp) if include_nms
            else postprocess_graph.raw_outputs_model(**common))
    model = _merge(net, tail, [("raw_boxes", "raw_boxes"), ("raw_scores", "raw_scores")])
    model = _merge(head, model, [(n, n) for n in ("net_images", "box_back", "box_limit")])
  model.graph.name = "jaxdet_detector"
  model.producer_name = "jaxdet"
  return model


def finish_model(model, meta, path):
  """Sets `meta` (a metadata dataclass) as the model's `metadata_props`, runs the full ONNX
  checker and writes the model to `path` (parents created; None: not written). Returns it."""
  onnx.helper.set_model_props(model, metadata_lib.to_props(meta))
  onnx.checker.check_model(model, full_check=True)
  if path is not None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
  return model


def _network_model(detector, *, size, opset, fp16, input_name, num_proposals=None,
                   proposals_name="proposals"):
  """``Detector.forward`` converted by jax2onnx: ``input_name`` uint8 ``[N, S, S, 3]`` ->
  ``raw_boxes`` float32 ``[N, A, 4]``, ``raw_scores`` float32 ``[N, A, C]`` (a two-stage
  detector: `two_stage_graph.network_model`)."""
  if fp16 and two_stage_graph.is_two_stage(detector):
    raise ValueError("fp16 export is not supported for two-stage detectors (faster_rcnn)")
  if num_proposals is not None and not two_stage_graph.is_two_stage(detector):
    raise ValueError(f"num_proposals is only for Fast R-CNN (faster_rcnn, proposals='external') "
                     f"exports, got {num_proposals!r} for {_model_name(detector)}")
  _import_converter_plugins()
  _fix_max_pool_padding()
  if two_stage_graph.is_two_stage(detector):
    return two_stage_graph.network_model(detector, size=size, opset=opset,
                                         input_name=input_name,
                                         to_onnx=functools.partial(_to_onnx, opset=opset),
                                         num_proposals=num_proposals,
                                         proposals_name=proposals_name)
  # Trace once outside the converter: imports that `forward` does lazily must not happen while
  # jax2onnx has jax.nn/flax functions patched (module defaults would capture the patches), and a
  # wrong output structure is reported here rather than deep inside the converter.
  boxes, scores = jax.eval_shape(detector.forward, jax.ShapeDtypeStruct((1, size, size, 3),
                                                                        jnp.uint8))
  try:
    check_layout(boxes.shape, scores.shape)
  except ValueError as e:
    raise ValueError(f"Detector.forward must return boxes [N, A, 4] or [N, A, C, 4] and scores "
                     f"[N, A, C]; got {boxes.shape} and {scores.shape}") from e
  spec = jax.ShapeDtypeStruct((_BATCH, size, size, 3), jnp.uint8)
  model = _to_onnx(detector.forward, [spec], [input_name], ["raw_boxes", "raw_scores"],
                   opset=opset)
  if fp16:
    from onnxconverter_common import float16  # pylint: disable=g-import-not-at-top
    _outputs_through_identity(model.graph)
    # The uint8 -> float normalization stays float32 (the converter leaves its Cast(to=float)
    # as is, and mean/std need the precision); fp16 starts at the first convolution.
    with warnings.catch_warnings():  # it warns for every constant clamped to the fp16 range
      warnings.simplefilter("ignore", UserWarning)
      model = float16.convert_float_to_float16(
          model, keep_io_types=True, node_block_list=_input_prefix_nodes(model.graph, input_name))
    del model.graph.value_info[:]
  return model


def _to_onnx(fn, specs, input_names, output_names, *, opset):
  """`fn` converted by jax2onnx (``value_info`` dropped: jax2onnx records NHWC shapes for some
  NCHW intermediates, the strict checker rejects them and onnxruntime re-infers shapes)."""
  from jax2onnx import to_onnx  # heavy import, only when exporting
  # onnx_ir logs a warning per constant whose type it does not record (harmless, and dozens).
  serde_log = logging.getLogger("onnx_ir.serde")
  level = serde_log.level
  serde_log.setLevel(logging.ERROR)
  try:
    model = to_onnx(fn, specs, model_name="jaxdet_network", opset=opset, input_names=input_names,
                    output_names=output_names, return_mode="proto")
  finally:
    serde_log.setLevel(level)
  del model.graph.value_info[:]
  return model


def _outputs_through_identity(graph):
  """Ends every graph output with an Identity node.

  onnxconverter-common (1.16) keeps ops of its block list (Min/Max, e.g. the box clipping of a
  decoder) in float32 but then casts such a producer's graph output to float16 despite
  ``keep_io_types``; an Identity last makes it cast back to float32 as asked.
  """
  for out in graph.output:
    for node in graph.node:
      node.output[:] = [f"{o}_net" if o == out.name else o for o in node.output]
      node.input[:] = [f"{i}_net" if i == out.name else i for i in node.input]
    graph.node.append(onnx.helper.make_node("Identity", [f"{out.name}_net"], [out.name],
                                            name=f"{out.name}_identity"))


def _input_prefix_nodes(graph, input_name):
  """Names of the nodes between the graph input and the first Conv fed by it."""
  reached, names = {input_name}, []
  for node in graph.node:  # topologically sorted
    if node.op_type != "Conv" and any(i in reached for i in node.input):
      names.append(node.name)
      reached.update(node.output)
  return names


def _import_converter_plugins():
  """Imports jax2onnx's plugin trees except equinox's before its first conversion.

  jax2onnx imports every plugin module on first use; the equinox tree builds example modules at
  import time (~15 s of XLA compiles on a 2-core CPU) and jaxdet exports no equinox layer. Falls
  back to jax2onnx's own discovery if its internals differ from 0.17.
  """
  try:
    from jax2onnx.plugins import plugin_system  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  if getattr(plugin_system, "_already_imported_plugins", True) or not hasattr(
      plugin_system, "_import_tree"):
    return
  root = pathlib.Path(plugin_system.__file__).parent
  for sub in sorted(root.iterdir()):
    if sub.is_dir() and not sub.name.startswith("_") and sub.name != "equinox":
      plugin_system._import_tree(sub, f"jax2onnx.plugins.{sub.name}")
  plugin_system._already_imported_plugins = True


def _fix_max_pool_padding():
  """Makes jax2onnx's Linen ``max_pool`` honour explicit ``((lo, hi), ...)`` padding.

  jax2onnx 0.17's replacement of ``flax.linen.max_pool`` passes ``str(padding)`` on, so explicit
  padding is silently treated as VALID (wrong shapes, or wrong values when they happen to fit).
  Explicit padding becomes a -inf ``jnp.pad`` (what ``reduce_window`` pads with) + VALID pool.
  """
  try:
    from jax2onnx.plugins.flax.linen import max_pool as plugin  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  cls = getattr(plugin, "MaxPoolPlugin", None)
  if cls is None or getattr(cls, "_jaxdet_explicit_padding", False):
    return
  make_patch = cls._make_patch.__func__

  def make_patch_with_padding(klass, orig):
    patched = make_patch(klass, orig)

    def max_pool(x, *, window_shape, strides=None, padding="VALID"):
      if not isinstance(padding, str):
        spatial = [tuple(int(v) for v in p) for p in padding]
        pads = [(0, 0)] * (x.ndim - len(spatial) - 1) + spatial + [(0, 0)]
        x = jnp.pad(x, pads, constant_values=-jnp.inf)
        padding = "VALID"
      return patched(x, window_shape=window_shape, strides=strides, padding=padding)
    return max_pool

  cls._make_patch = classmethod(make_patch_with_padding)
  cls._jaxdet_explicit_padding = True


def _input_dims(model, name):
  """The dims of graph input ``name`` (0 for a symbolic one)."""
  value = next(i for i in model.graph.input if i.name == name)
  return [d.dim_value for d in value.type.tensor_type.shape.dim]


def _raw_output_dims(model):
  """``(A, C, class_specific)`` of the network's ``raw_boxes`` / ``raw_scores`` outputs."""
  dims = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}
  boxes, (_, a, c) = dims["raw_boxes"], dims["raw_scores"]
  if min(a, c) < 1 or boxes[1:] not in ([a, 4], [a, c, 4]):
    raise ValueError(f"Detector.forward must return boxes [N, A, 4] or [N, A, C, 4] and scores "
                     f"[N, A, C] with static A, C; got {dims}")
  return a, c, len(boxes) == 4


def _preprocess(detector):
  """The model's ``Preprocess`` (``config.model.preprocess``; defaults when absent)."""
  from jaxdet.data import preprocess  # pylint: disable=g-import-not-at-top
  config = getattr(detector, "config", None)
  return preprocess.of_model(config.get("model") if config is not None else None)


def _merge(first, second, io_map):
  """``onnx.compose.merge_models`` after aligning IR versions and opset imports."""
  return two_stage_graph.merge(first, second, io_map)


def _model_name(detector):
  config = getattr(detector, "config", None)
  try:
    return str(config.model.name)
  except AttributeError:
    return type(getattr(detector, "model", detector)).__name__


def _jaxdet_version():
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  try:
    return importlib.metadata.version("jaxdet")
  except importlib.metadata.PackageNotFoundError:  # a source tree that is not installed
    import jaxdet  # pylint: disable=g-import-not-at-top
    return str(getattr(jaxdet, "__version__", "unknown"))
