"""The `metadata_props` of an exported detector: written at export, read back by `export.Detector`."""

import dataclasses
import json

# Bumped when the meaning of the exported inputs/outputs changes.
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ExportMetadata:
  """What a runtime needs to know about an exported detector.

  Attributes:
    class_names: names indexed by class id.
    input_size: S, the square network input side in pixels.
    dynamic_image_size: True when the graph letterboxes `[N, H, W, 3]` images itself.
    model_name: detector family (`retinanet`, `yolo_anchor_free`, ...).
    score_threshold: baked score threshold.
    iou_threshold: baked NMS IoU threshold.
    max_detections: K, detection slots per image.
    pre_nms_top_k: candidates entering NMS.
    include_nms: False for graphs that output raw `boxes`/`scores`.
    fp16: True when the network runs in float16 (inputs/outputs keep their dtypes).
    jaxdet_version: version of jaxdet that exported the file.
    pre_nms_top_k_per_level: True when the top-k candidates were taken per level.
    pre_nms_top_k_per_class: True when the top-k candidates were taken per class.
    resize: the model's resize rule ("letterbox", "stretch" or "rcnn",
      ``config.model.preprocess``): a runtime fitting images to a fixed-size graph must resize
      the same way.
    interpolation: how it resamples ("pil", "opencv" or "torch"; the graph of a "torch" model
      resizes itself, `dynamic_image_size`).
    format_version: version of this metadata layout.
    checkpoint_step: training step of the exported weights (-1: unknown, e.g. not from a
      checkpoint, or an export older than this field).
    checkpoint_kind: `best` (by val AP) or `latest`: the checkpoint folder it came from ("" when
      unknown).
  """
  class_names: tuple[str, ...]
  input_size: int
  dynamic_image_size: bool
  model_name: str
  score_threshold: float
  iou_threshold: float
  max_detections: int
  pre_nms_top_k: int
  include_nms: bool
  fp16: bool
  jaxdet_version: str
  pre_nms_top_k_per_level: bool = False  # absent from older exports
  resize: str = "letterbox"  # absent from older exports
  format_version: int = FORMAT_VERSION
  checkpoint_step: int = -1
  checkpoint_kind: str = ""
  pre_nms_top_k_per_class: bool = False  # absent from older exports
  interpolation: str = "pil"  # absent from older exports


def to_props(meta: ExportMetadata) -> dict[str, str]:
  """Flattens metadata into the string key/values of ONNX `metadata_props`.

  Args:
    meta: the metadata.

  Returns:
    dict of str -> str (lists and bools as JSON).
  """
  return {k: json.dumps(list(v) if isinstance(v, tuple) else v)
          for k, v in dataclasses.asdict(meta).items()}


def from_props(props: dict[str, str]) -> ExportMetadata:
  """Parses `metadata_props` written by `to_props`.

  Args:
    props: dict of str -> str (e.g. `{p.key: p.value for p in model.metadata_props}` or
      onnxruntime's `get_modelmeta().custom_metadata_map`).

  Returns:
    ExportMetadata.

  Raises:
    ValueError: keys are missing or unparsable (not a jaxdet export, or a corrupt one).
  """
  fields = {f.name for f in dataclasses.fields(ExportMetadata)}
  optional = {f.name for f in dataclasses.fields(ExportMetadata)
              if f.default is not dataclasses.MISSING}
  missing = sorted(fields - set(props) - optional)
  if missing:
    raise ValueError(f"not a jaxdet ONNX export: metadata lacks {missing}")
  try:
    values = {k: json.loads(props[k]) for k in fields if k in props}
  except json.JSONDecodeError as e:
    raise ValueError(f"corrupt jaxdet ONNX metadata: {e}") from e
  values["class_names"] = tuple(str(c) for c in values["class_names"])
  return ExportMetadata(**values)
