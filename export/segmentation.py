"""ONNX export and onnxruntime serving of jaxdet segmentation models (`jaxdet.load` -> Segmenter).

Graph: uint8 ``images [N, S, S, 3]`` (dynamic N) -> the model's normalization -> model ->
``masks`` int32 ``[N, S, S]`` (argmax over classes, in the graph) and, with
``probabilities=True``, ``probabilities`` float32 ``[N, S, S, K]`` (softmax). It is
``Segmenter.forward`` followed by the argmax, so its masks equal ``Segmenter.predict``'s on
S x S images. The metadata (``task = "segmentation"``) names the classes, S and the resize rule.
"""

import dataclasses
import json
import logging
import pathlib

import numpy as np

TASK = "segmentation"
_BATCH = "N"


@dataclasses.dataclass(frozen=True)
class SegmentationMetadata:
  """The `metadata_props` of an exported segmentation model.

  Attributes:
    class_names: K names indexed by mask value (0 = background).
    input_size: S, the square network input side.
    model_name: the family (`fcn`).
    resize: "letterbox" or "stretch": how a runtime fits other image sizes to S.
    probabilities: whether the graph also outputs `probabilities`.
    jaxdet_version: version of jaxdet that exported it.
    checkpoint_step: training step of the weights (-1 unknown).
    checkpoint_kind: `best`, `latest` or "".
    task: "segmentation".
  """
  class_names: tuple[str, ...]
  input_size: int
  model_name: str
  resize: str
  probabilities: bool
  jaxdet_version: str
  checkpoint_step: int = -1
  checkpoint_kind: str = ""
  task: str = TASK


def is_segmentation_props(props: dict[str, str]) -> bool:
  """Whether ONNX `metadata_props` (str -> str) are those of a segmentation export."""
  return props.get("task") == json.dumps(TASK)


def _from_props(props):
  try:
    values = {f.name: json.loads(props[f.name]) for f in dataclasses.fields(SegmentationMetadata)
              if f.name in props}
    values["class_names"] = tuple(str(c) for c in values["class_names"])
    return SegmentationMetadata(**values)
  except (KeyError, TypeError, json.JSONDecodeError) as e:
    raise ValueError(f"corrupt jaxdet segmentation ONNX metadata: {e}") from e


def export_segmentation_onnx(segmenter, path, *, image_size=None, opset=None,
                             probabilities=False, checkpoint_step=None, checkpoint_kind=None):
  """Exports a `jaxdet.inference.segment.Segmenter` to ONNX.

  Args:
    segmenter: what `jaxdet.load` returns for a segmentation workdir.
    path: the `.onnx` file to write (parents created); None writes nothing.
    image_size: S of the graph input (default: the segmenter's).
    opset: ONNX opset (default that of `onnx_export.DEFAULT_OPSET`).
    probabilities: also output the softmax `probabilities` float32 `[N, S, S, K]`.
    checkpoint_step, checkpoint_kind: recorded in the metadata.

  Returns:
    The `onnx.ModelProto`: input `images` uint8 `[N, S, S, 3]`; outputs `masks` int32
    `[N, S, S]` (+ `probabilities`).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jax2onnx import to_onnx  # pylint: disable=g-import-not-at-top
  from . import onnx_export  # pylint: disable=g-import-not-at-top

  opset = onnx_export.DEFAULT_OPSET if opset is None else int(opset)
  if not onnx_export.MIN_OPSET <= opset <= onnx_export.MAX_OPSET:
    raise ValueError(f"opset must be in [{onnx_export.MIN_OPSET}, {onnx_export.MAX_OPSET}], "
                     f"got {opset}")
  size = int(segmenter.image_size if image_size is None else image_size)
  if size < 1:
    raise ValueError(f"image_size must be a positive integer, got {image_size!r}")

  def graph(images):
    logits = segmenter.forward(images)
    masks = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return (masks, jax.nn.softmax(logits, axis=-1)) if probabilities else masks

  onnx_export._import_converter_plugins()  # pylint: disable=protected-access
  onnx_export._fix_max_pool_padding()  # pylint: disable=protected-access
  jax.eval_shape(graph, jax.ShapeDtypeStruct((1, size, size, 3), jnp.uint8))  # lazy imports
  serde_log = logging.getLogger("onnx_ir.serde")
  level = serde_log.level
  serde_log.setLevel(logging.ERROR)
  try:
    model = to_onnx(graph, [jax.ShapeDtypeStruct((_BATCH, size, size, 3), jnp.uint8)],
                    model_name="jaxdet_segmenter", opset=opset, input_names=["images"],
                    output_names=["masks", "probabilities"] if probabilities else ["masks"],
                    return_mode="proto")
  finally:
    serde_log.setLevel(level)
  del model.graph.value_info[:]  # jax2onnx's NHWC shapes of NCHW intermediates (see onnx_export)
  model.producer_name = "jaxdet"
  meta = SegmentationMetadata(
      class_names=tuple(segmenter.class_names), input_size=size,
      model_name=str(segmenter.config.model.name),
      resize=onnx_export._preprocess(segmenter).resize,  # pylint: disable=protected-access
      probabilities=bool(probabilities),
      jaxdet_version=onnx_export._jaxdet_version(),  # pylint: disable=protected-access
      checkpoint_step=-1 if checkpoint_step is None else int(checkpoint_step),
      checkpoint_kind=checkpoint_kind or "")
  return onnx_export.finish_model(model, meta, path)


class Segmenter:
  """An onnxruntime session around a segmentation export (no JAX needed).

  `predict(images)` takes the inputs of `jaxdet.load(...).predict` and returns `{"masks": int32
  [N, H, W]}` (+ `probabilities` when exported with them) at each image's size. S x S images go
  through the graph as they are (masks equal `jaxdet.load(...).predict`'s); other sizes are
  resized to S by the model's rule and the masks of their area resized back by nearest neighbour
  (`jaxdet.load(...).predict` resizes the logits bilinearly instead: borders may differ).
  """

  def __init__(self, path, providers=None, *, session_options=None):
    import onnxruntime as ort  # pylint: disable=g-import-not-at-top
    from . import runtime  # pylint: disable=g-import-not-at-top
    self.path = pathlib.Path(path)
    if not self.path.is_file():
      raise FileNotFoundError(f"ONNX model not found: {self.path}")
    try:
      self._session = ort.InferenceSession(str(self.path), sess_options=session_options,
                                           providers=providers or runtime.default_providers())
    except Exception as e:  # onnxruntime raises its own types for corrupt/foreign files.
      raise ValueError(f"cannot load ONNX model {self.path}: {runtime._first_line(e)}") from e  # pylint: disable=protected-access
    props = self._session.get_modelmeta().custom_metadata_map
    if not is_segmentation_props(props):
      raise ValueError(f"{self.path} is not a jaxdet segmentation export")
    self.metadata = _from_props(props)
    self.class_names = self.metadata.class_names
    self.image_size = self.metadata.input_size
    self.providers = self._session.get_providers()
    self.task = TASK

  def __repr__(self):
    return (f"Segmenter({str(self.path)!r}, model={self.metadata.model_name}, "
            f"image_size={self.image_size}, classes={len(self.class_names)})")

  def predict(self, images):
    """See the class docstring. Raises ValueError for an input that is not an image."""
    from jaxdet import predict_inputs  # pylint: disable=g-import-not-at-top
    batch = predict_inputs.as_image_list(images)
    inputs, scale, _ = predict_inputs.resize_batch(batch, self.image_size, self.metadata.resize)
    names = [o.name for o in self._session.get_outputs()]
    outs = dict(zip(names, self._session.run(None, {"images": inputs})))
    masks, probs = [], []
    for i, image in enumerate(batch):
      h, w = image.shape[:2]
      mask, prob = outs["masks"][i], outs.get("probabilities", [None] * len(batch))[i]
      if (h, w) != mask.shape:
        rows, cols = self._source_pixels(h, w, scale[i])
        mask = mask[rows][:, cols]
        prob = None if prob is None else prob[rows][:, cols]
      masks.append(mask.astype(np.int32))
      probs.append(prob)
    stack = np.stack if len({m.shape for m in masks}) == 1 else list
    out = {"masks": stack(masks)}
    if "probabilities" in outs:
      out["probabilities"] = stack([p.astype(np.float32) for p in probs])
    return out

  def _source_pixels(self, h, w, scale):
    """Nearest network pixel of each image row and column."""
    s = self.image_size
    if self.metadata.resize == "stretch":
      nh, nw = s, s
    else:
      nh, nw = max(1, min(s, round(h * scale[1]))), max(1, min(s, round(w * scale[0])))
    rows = np.minimum(((np.arange(h) + 0.5) * nh / h).astype(np.int64), nh - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * nw / w).astype(np.int64), nw - 1)
    return rows, cols


def overlay(image_uint8, mask, alpha=0.5):
  """The mask's colours blended over the image (`jaxdet.inference.segment.overlay`)."""
  from jaxdet.inference.segment import overlay as overlay_fn  # pylint: disable=g-import-not-at-top
  return overlay_fn(image_uint8, mask, alpha=alpha)
