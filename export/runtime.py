"""`Detector`: an exported jaxdet model served by onnxruntime (no JAX needed)."""

import pathlib

import numpy as np

from . import metadata as metadata_lib


def default_providers():
  """onnxruntime execution providers: CUDA first when this onnxruntime build has it, else CPU."""
  import onnxruntime as ort  # pylint: disable=g-import-not-at-top
  available = ort.get_available_providers()
  if "CUDAExecutionProvider" in available:
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]
  return ["CPUExecutionProvider"]


class Detector:
  """An onnxruntime session around a `jaxdet export` file.

  Takes uint8 RGB images of any size, letterboxes them as the model expects (top-left,
  ``jaxdet.data.preprocess``; in the graph for ``--dynamic-image-size`` exports) and returns
  detections in original-image pixels, the same dict as ``jaxdet.load(...).predict``.

  Attributes:
    path: the model file.
    metadata: ``ExportMetadata`` read from the file.
    class_names: names indexed by class id.
    image_size: S, the network input side.
    providers: the session's execution providers.
  """

  def __init__(self, path, providers=None, *, session_options=None):
    """Opens a model.

    Args:
      path: ``.onnx`` file written by ``export.export_onnx`` / ``jaxdet export``.
      providers: onnxruntime execution providers (default: ``default_providers()``).
      session_options: optional ``onnxruntime.SessionOptions`` (threads, spinning, ...). On a
        CPU shared with other processes, ``intra_op_num_threads=1`` or
        ``session.intra_op.allow_spinning=0`` can be faster (see BENCHMARKS.md).

    Raises:
      FileNotFoundError: no such file.
      ValueError: not a loadable ONNX model, or not a jaxdet export.
    """
    import onnxruntime as ort  # pylint: disable=g-import-not-at-top
    self.path = pathlib.Path(path)
    if not self.path.is_file():
      raise FileNotFoundError(f"ONNX model not found: {self.path}")
    try:
      self._session = ort.InferenceSession(str(self.path), sess_options=session_options,
                                           providers=providers or default_providers())
    except Exception as e:  # onnxruntime raises its own types for corrupt/foreign files.
      raise ValueError(f"cannot load ONNX model {self.path}: {_first_line(e)}") from e
    props = self._session.get_modelmeta().custom_metadata_map
    self.metadata = metadata_lib.from_props(props)
    self.class_names = self.metadata.class_names
    self.image_size = self.metadata.input_size
    self.providers = self._session.get_providers()
    self._input_name = self._session.get_inputs()[0].name
    self._output_names = [o.name for o in self._session.get_outputs()]

  def __repr__(self):
    m = self.metadata
    return (f"Detector({str(self.path)!r}, model={m.model_name}, image_size={m.input_size}, "
            f"classes={len(m.class_names)}, providers={self.providers})")

  def __call__(self, images):
    return self.predict(images)

  def predict(self, images):
    """Detects objects.

    Args:
      images: uint8 RGB ``[N, H, W, 3]`` or one ``[H, W, 3]`` image (N = 1), a PIL image, an
        image path (EXIF orientation applied), or a list of these of mixed sizes: the inputs of
        ``jaxdet.load(...).predict`` (``jaxdet.predict_inputs``).

    Returns:
      dict of NumPy arrays, as ``jaxdet.load(...).predict``: ``boxes`` float32 ``[N, K, 4]`` xyxy
      in each image's pixels, ``scores`` float32 ``[N, K]``, ``classes`` int32 ``[N, K]``,
      ``num_detections`` int32 ``[N]`` (entries past it are 0). For an export without NMS:
      ``boxes`` float32 ``[N, A, 4]`` and ``scores`` float32 ``[N, A, C]``.

    Raises:
      ValueError: an input is not an image; the message names what was passed.
      FileNotFoundError: a path does not exist.
    """
    from jaxdet import predict_inputs  # pylint: disable=g-import-not-at-top
    batch = predict_inputs.as_image_list(images)
    if self.metadata.dynamic_image_size:
      return self._predict_dynamic(batch)
    return self._predict_letterboxed(batch)

  def _run(self, images_uint8):
    outs = dict(zip(self._output_names, self._session.run(None, {self._input_name: images_uint8})))
    if not self.metadata.include_nms:
      return {"boxes": outs["boxes"].astype(np.float32),
              "scores": outs["scores"].astype(np.float32)}
    return {"boxes": outs["detection_boxes"].astype(np.float32),
            "scores": outs["detection_scores"].astype(np.float32),
            "classes": outs["detection_classes"].astype(np.int32),
            "num_detections": outs["num_detections"].astype(np.int32)}

  def _predict_dynamic(self, batch):
    # The graph letterboxes; one run per distinct image size (its input is [N, H, W, 3]).
    results = [None] * len(batch)
    by_size = {}
    for i, image in enumerate(batch):
      by_size.setdefault(image.shape[:2], []).append(i)
    for idx in by_size.values():
      out = self._run(np.stack([batch[i] for i in idx]))
      for j, i in enumerate(idx):
        results[i] = {k: v[j] for k, v in out.items()}
    return {k: np.stack([r[k] for r in results]) for k in results[0]}

  def _predict_letterboxed(self, batch):
    from jaxdet import predict_inputs  # pylint: disable=g-import-not-at-top
    inputs, scale, limits = predict_inputs.resize_batch(batch, self.image_size, self.metadata.resize)
    out = self._run(inputs)
    out["boxes"] = predict_inputs.boxes_to_images(out["boxes"], scale, limits,
                                                  out.get("num_detections"))
    return out


def _first_line(error):
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__
