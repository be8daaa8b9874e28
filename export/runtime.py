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

  Takes uint8 RGB images of any size, resizes them as the model expects (``jaxdet.data.
  preprocess``: letterbox or stretch with PIL or OpenCV here; in the graph for
  ``--dynamic-image-size`` exports and for torchvision's float preprocessing) and returns
  detections in original-image pixels, the same dict as ``jaxdet.load(...).predict``.

  Attributes:
    path: the model file.
    metadata: ``ExportMetadata`` read from the file.
    class_names: names indexed by class id.
    image_size: S, the network input side.
    providers: the session's execution providers.
    num_proposals: P of a Fast R-CNN export (its ``proposals`` input), else None.
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
    inputs = {i.name: i for i in self._session.get_inputs()}
    # A Fast R-CNN export: `proposals` [N, P, 4] beside the images (P static).
    self.num_proposals = (int(inputs["proposals"].shape[1]) if "proposals" in inputs else None)
    self._input_name = next(n for n in inputs if n != "proposals")
    self._output_names = [o.name for o in self._session.get_outputs()]

  def __repr__(self):
    m = self.metadata
    return (f"Detector({str(self.path)!r}, model={m.model_name}, image_size={m.input_size}, "
            f"classes={len(m.class_names)}, providers={self.providers})")

  def __call__(self, images, **kwargs):
    return self.predict(images, **kwargs)

  def predict(self, images, *, proposals=None, proposal_mask=None):
    """Detects objects.

    Args:
      images: uint8 RGB ``[N, H, W, 3]`` or one ``[H, W, 3]`` image (N = 1), a PIL image, an
        image path (EXIF orientation applied), or a list of these of mixed sizes: the inputs of
        ``jaxdet.load(...).predict`` (``jaxdet.predict_inputs``).
      proposals: float32 ``[N, P, 4]`` xyxy in the pixels of ``images``, for a Fast R-CNN export
        only (required there), as ``jaxdet.load(...).predict``; P up to ``num_proposals`` (the
        rest is padded).
      proposal_mask: optional bool ``[N, P]`` (False: a padding row), with ``proposals``.

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
    predict_inputs.check_proposals_wanted(self.num_proposals is not None, proposals,
                                          proposal_mask, self.metadata.model_name)
    batch = predict_inputs.as_image_list(images)
    if proposals is not None:
      # Checked in image pixels (scale 1); the letterbox scale is applied below or in the graph.
      proposals = self._padded_proposals(*predict_inputs.proposals_to_inputs(
          proposals, proposal_mask, np.ones((len(batch), 2), np.float32),
          num_images=len(batch)))
    if self.metadata.dynamic_image_size:
      return self._predict_dynamic(batch, proposals)
    return self._predict_letterboxed(batch, proposals)

  def _padded_proposals(self, proposals, mask):
    """``[N, num_proposals, 4]`` with NaN rows for masked and padding rows (the graph ignores a
    row with a non-finite coordinate)."""
    n, p = mask.shape
    if p > self.num_proposals:
      raise ValueError(f"proposals has P = {p} boxes per image but {self.path.name} was exported "
                       f"for at most {self.num_proposals} (jaxdet export --num-proposals)")
    out = np.full((n, self.num_proposals, 4), np.nan, np.float32)
    out[:, :p] = np.where(mask[..., None], proposals, np.nan)
    return out

  def _run(self, images_uint8, proposals=None):
    feeds = {self._input_name: images_uint8}
    if proposals is not None:
      feeds["proposals"] = proposals
    outs = dict(zip(self._output_names, self._session.run(None, feeds)))
    if not self.metadata.include_nms:
      return {"boxes": outs["boxes"].astype(np.float32),
              "scores": outs["scores"].astype(np.float32)}
    return {"boxes": outs["detection_boxes"].astype(np.float32),
            "scores": outs["detection_scores"].astype(np.float32),
            "classes": outs["detection_classes"].astype(np.int32),
            "num_detections": outs["num_detections"].astype(np.int32)}

  def _predict_dynamic(self, batch, proposals=None):
    # The graph letterboxes; one run per distinct image size (its input is [N, H, W, 3]).
    results = [None] * len(batch)
    by_size = {}
    for i, image in enumerate(batch):
      by_size.setdefault(image.shape[:2], []).append(i)
    for idx in by_size.values():
      out = self._run(np.stack([batch[i] for i in idx]),
                      None if proposals is None else proposals[idx])
      for j, i in enumerate(idx):
        results[i] = {k: v[j] for k, v in out.items()}
    return {k: np.stack([r[k] for r in results]) for k in results[0]}

  def _predict_letterboxed(self, batch, proposals=None):
    from jaxdet import predict_inputs  # pylint: disable=g-import-not-at-top
    from jaxdet.data import preprocess  # pylint: disable=g-import-not-at-top
    rule = preprocess.Preprocess(resize=self.metadata.resize,
                                 interpolation=self.metadata.interpolation)
    inputs, scale, limits = predict_inputs.resize_batch(batch, self.image_size, rule)
    if proposals is not None:  # into network pixels as the images (NaN rows stay NaN)
      proposals = proposals * np.concatenate([scale, scale], axis=1)[:, None, :]
    out = self._run(inputs, proposals)
    out["boxes"] = predict_inputs.boxes_to_images(out["boxes"], scale, limits,
                                                  out.get("num_detections"))
    return out


def _first_line(error):
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__
