"""Preprocessing belongs to the model: normalization and the resize rule, read from
``config.model.preprocess`` by every stage (the trainer's input pipeline, ``jaxdet.load(...)``
and the ONNX graph).

``config.model.preprocess`` (all optional; a model config without it gets today's defaults):

- ``mean``, ``std``: 3 floats each, in the units of ``value_range``;
- ``value_range``: 255.0 (pixels in 0..255, jaxdet's default) or 1.0 (pixels divided by 255 first,
  torchvision); the normalized image is ``(uint8 / 255 * value_range - mean) / std``, float32;
- ``resize``, the resize rule:
  - ``"letterbox"`` (jaxdet's own models): ``scale = S / max(h, w)``, sides
    ``min(S, max(1, round(side * scale)))``, anchored top-left on an S x S canvas;
  - ``"stretch"``: S x S ignoring the aspect ratio (torchvision's SSD, Darknet);
  - ``"rcnn"``: torchvision's ``GeneralizedRCNNTransform`` (R-CNN family, RetinaNet):
    ``scale = min(min_size / min(h, w), max_size / max(h, w))`` in float64, sides
    ``int(side * scale)`` (``F.interpolate(..., recompute_scale_factor=True)``), then padded to a
    multiple of ``size_divisible`` (32). ``jaxdet.load(...).predict`` runs each image at its own
    padded size, as torchvision does for one image; batched training and evaluation place it
    top-left on the S x S canvas (torchvision pads a batch to its largest image).
- ``interpolation``: how the resize samples:
  - ``"pil"`` (jaxdet's own models): PIL's bilinear on uint8, antialiased when shrinking;
  - ``"torch"`` (torchvision's models): ``F.interpolate(mode="bilinear", align_corners=False)``,
    no antialias, on the normalized float image (torchvision normalizes, then resizes);
  - ``"opencv"`` (Darknet models): ``cv2.resize(INTER_LINEAR)`` on uint8, as
    ``cv2.dnn.blobFromImage``.
- ``min_size``, ``max_size``, ``size_divisible``: the ``"rcnn"`` rule's sizes (torchvision's
  constructor arguments; defaults 800, 1333, 32).

The pad value is defined in normalized units: the letterbox pads with the normalization of a
black pixel (``-mean / std``: jaxdet's models trained so), the ``"rcnn"`` rule with 0 (torchvision
normalizes, then pads with zeros). Training and prediction pad alike.
"""

import dataclasses
import functools

import numpy as np
from PIL import Image

# ImageNet statistics in 0..255 units (RGB): the defaults of `config.model.preprocess`.
MEAN_RGB = (123.675, 116.28, 103.53)
STD_RGB = (58.395, 57.12, 57.375)
RESIZE_RULES = ("letterbox", "stretch", "rcnn")
INTERPOLATIONS = ("pil", "torch", "opencv")


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """Resolved ``config.model.preprocess`` (hashable: usable as a jit static argument).

  Attributes:
    mean: 3 floats, in units of ``value_range``.
    std: 3 floats, in units of ``value_range``.
    value_range: the pixel scale the model expects (255.0 or 1.0).
    resize: ``"letterbox"``, ``"stretch"`` or ``"rcnn"``.
    interpolation: ``"pil"``, ``"torch"`` or ``"opencv"``.
    min_size: the ``"rcnn"`` rule's target short side.
    max_size: the ``"rcnn"`` rule's bound on the long side.
    size_divisible: the ``"rcnn"`` rule pads each side to a multiple of it.
  """
  mean: tuple = MEAN_RGB
  std: tuple = STD_RGB
  value_range: float = 255.0
  resize: str = "letterbox"
  interpolation: str = "pil"
  min_size: int = 800
  max_size: int = 1333
  size_divisible: int = 32


DEFAULT = Preprocess()


def default_config():
  """``config.model.preprocess`` ConfigDict with the defaults (today's jaxdet preprocessing)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  return ml_collections.ConfigDict(dataclasses.asdict(DEFAULT))


def settings(preprocess=None) -> Preprocess:
  """Resolves a preprocessing config; missing keys take the defaults.

  Args:
    preprocess: None (defaults), a ``Preprocess``, or a dict / ConfigDict with a subset of
      ``mean``, ``std``, ``value_range``, ``resize``.

  Returns:
    ``Preprocess``.

  Raises:
    ValueError: an unknown key or a bad value, named.
  """
  if preprocess is None:
    return DEFAULT
  if isinstance(preprocess, Preprocess):
    return preprocess
  values = dict(preprocess.items())
  known = {f.name for f in dataclasses.fields(Preprocess)}
  unknown = sorted(set(values) - known)
  if unknown:
    raise ValueError(f"unknown model.preprocess keys {unknown}; known: {sorted(known)}")
  out = dataclasses.replace(DEFAULT, **values)
  try:
    mean = tuple(float(v) for v in out.mean)
    std = tuple(float(v) for v in out.std)
  except (TypeError, ValueError):
    raise ValueError(f"model.preprocess mean and std must be 3 numbers each, got "
                     f"{out.mean!r} and {out.std!r}") from None
  if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
    raise ValueError(f"model.preprocess mean and std must be 3 numbers each (std > 0), got "
                     f"{out.mean!r} and {out.std!r}")
  if isinstance(out.value_range, bool) or not (isinstance(out.value_range, (int, float))
                                               and out.value_range > 0):
    raise ValueError(f"model.preprocess.value_range must be a positive number (255.0 or 1.0), "
                     f"got {out.value_range!r}")
  if out.resize not in RESIZE_RULES:
    raise ValueError(f"model.preprocess.resize must be one of {RESIZE_RULES}, got {out.resize!r}")
  if out.interpolation not in INTERPOLATIONS:
    raise ValueError(f"model.preprocess.interpolation must be one of {INTERPOLATIONS}, got "
                     f"{out.interpolation!r}")
  sizes = {}
  for key in ("min_size", "max_size", "size_divisible"):
    value = getattr(out, key)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"model.preprocess.{key} must be a positive integer, got {value!r}")
    sizes[key] = int(value)
  return Preprocess(mean=mean, std=std, value_range=float(out.value_range), resize=out.resize,
                    interpolation=out.interpolation, **sizes)


def of_model(model_config) -> Preprocess:
  """The preprocessing of a model: ``settings(model_config.preprocess)``, defaults when the
  config (an old one, or None) has no ``preprocess``."""
  if model_config is None:
    return DEFAULT
  return settings(model_config.get("preprocess"))


@functools.lru_cache(maxsize=16)
def _affine(pre: Preprocess):
  """float32 ``(gain, bias)`` with ``normalized = uint8 * gain + bias`` (computed in float64)."""
  std = np.asarray(pre.std, np.float64)
  gain = (pre.value_range / 255.0) / std
  bias = -np.asarray(pre.mean, np.float64) / std
  return gain.astype(np.float32), bias.astype(np.float32)


def normalize_image(images_uint8, preprocess=None):
  """Maps uint8 RGB pixels to the model's float32 input: ``(x / 255 * value_range - mean) / std``.

  Works on NumPy arrays (returns NumPy) and on JAX arrays / tracers (returns JAX), so the same
  function serves the input pipeline, the jitted ``Detector.forward`` and the ONNX export.

  Args:
    images_uint8: ``[..., H, W, 3]`` uint8 (any integer or float dtype in 0..255 is accepted).
    preprocess: the model's preprocessing (see ``settings``); None = defaults.

  Returns:
    ``[..., H, W, 3]`` float32.
  """
  pre = settings(preprocess)
  if isinstance(images_uint8, np.ndarray):
    # Two fused passes, no float temporary: x * gain + bias. Same float32 result as the formula
    # up to rounding (|diff| < 1e-6 relative).
    gain, bias = _affine(pre)
    out = np.multiply(images_uint8, gain, dtype=np.float32)
    out += bias
    return out
  import jax.numpy as xp  # pylint: disable=g-import-not-at-top
  x = xp.asarray(images_uint8).astype(xp.float32)
  if pre.value_range != 255.0:  # at 255 the factor is exactly 1: keep the plain formula
    x = x * np.float32(pre.value_range / 255.0)
  mean = xp.asarray(pre.mean, dtype=xp.float32)
  std = xp.asarray(pre.std, dtype=xp.float32)
  return (x - mean) / std


def denormalize_image(images, preprocess=None) -> np.ndarray:
  """Inverse of ``normalize_image`` for drawing: float32 ``[..., H, W, 3]`` -> uint8 (rounded,
  clipped to 0..255)."""
  pre = settings(preprocess)
  pixels = (np.asarray(images, np.float64) * np.asarray(pre.std) + np.asarray(pre.mean))
  pixels = pixels * (255.0 / pre.value_range)
  return np.clip(pixels, 0, 255).round().astype(np.uint8)


def resize_to_input(image_uint8, size, resize="letterbox"):
  """One image to the ``size x size`` uint8 network input by the model's resize rule.

  Only for the rules that resize uint8 pixels (``"letterbox"`` / ``"stretch"`` with ``"pil"`` or
  ``"opencv"`` interpolation: what a static-size ONNX graph takes); ``network_input`` serves
  every rule.

  Args:
    image_uint8: ``[H, W, 3]`` uint8.
    size: side of the square output ``S``.
    resize: ``"letterbox"`` (``letterbox_image``) or ``"stretch"`` (``stretch_image``) with PIL's
      resampling, or a ``Preprocess`` (its rule and interpolation).

  Returns:
    ``(image [S, S, 3] uint8, (sx, sy))``, network pixels per input pixel along x and y.

  Raises:
    ValueError: a rule that resizes float pixels (``"rcnn"``, ``"torch"`` interpolation).
  """
  pre = resize if isinstance(resize, Preprocess) else Preprocess(resize=resize)
  if not resizes_uint8(pre):
    raise ValueError(f"resize={pre.resize!r} with interpolation={pre.interpolation!r} resizes "
                     f"float pixels: use network_input")
  if pre.resize == "letterbox":
    return letterbox_image(image_uint8, size, interpolation=pre.interpolation)
  return stretch_image(image_uint8, size, interpolation=pre.interpolation)


def resizes_uint8(pre: Preprocess) -> bool:
  """True when the rule's network input is uint8 pixels resized on their own (PIL or OpenCV
  letterbox/stretch): a host can resize for a fixed-size graph. False for the ``"rcnn"`` rule
  and ``"torch"`` interpolation, which resize normalized float pixels."""
  return pre.resize in ("letterbox", "stretch") and pre.interpolation in ("pil", "opencv")


def stretch_image(image_uint8, size, *, interpolation="pil"):
  """Resizes one image to ``size x size`` ignoring its aspect ratio (torchvision SSD, Darknet).

  Args:
    image_uint8: ``[H, W, 3]`` uint8.
    size: side of the square output ``S``.
    interpolation: ``"pil"`` or ``"opencv"``.

  Returns:
    ``(image [S, S, 3] uint8, (sx, sy))`` with ``sx = S / w``, ``sy = S / h``.
  """
  h, w = image_uint8.shape[:2]
  return resize_image(image_uint8, size, size, interpolation=interpolation), (size / w, size / h)


def letterbox_scale(h, w, size):
  """The letterbox scale factor ``size / max(h, w)``.

  Args:
    h: original image height in pixels (int).
    w: original image width in pixels (int).
    size: side of the square network input ``S`` (int).

  Returns:
    float scale.
  """
  return float(size) / float(max(h, w))


def letterbox_shape(h, w, size):
  """Resized ``(new_h, new_w)`` inside the letterbox: ``round(h * scale)``, at least 1 and at most
  ``size``. The longer side is exactly ``size``."""
  scale = letterbox_scale(h, w, size)
  new_h = min(size, max(1, int(round(h * scale))))
  new_w = min(size, max(1, int(round(w * scale))))
  return new_h, new_w


def rcnn_scale(h, w, min_size, max_size):
  """torchvision's ``GeneralizedRCNNTransform`` scale: ``min(min_size / min(h, w),
  max_size / max(h, w))`` in float64, as its eager ``_resize_image_and_masks``."""
  return min(float(min_size) / min(h, w), float(max_size) / max(h, w))


def rcnn_shape(h, w, min_size, max_size):
  """Resized ``(new_h, new_w)`` of the ``"rcnn"`` rule: ``int(side * scale)`` (``F.interpolate``
  with ``recompute_scale_factor=True``), at least 1."""
  scale = rcnn_scale(h, w, min_size, max_size)
  return max(1, int(h * scale)), max(1, int(w * scale))


def resized_shape(h, w, size, pre: Preprocess):
  """``(new_h, new_w)`` of an ``h x w`` image under the model's rule (``size``: S)."""
  if pre.resize == "letterbox":
    return letterbox_shape(h, w, size)
  if pre.resize == "stretch":
    return size, size
  return rcnn_shape(h, w, pre.min_size, pre.max_size)


def padded_shape(new_h, new_w, pre: Preprocess):
  """The ``"rcnn"`` rule's padded extent: each side rounded up to ``size_divisible``."""
  d = pre.size_divisible
  return -(-new_h // d) * d, -(-new_w // d) * d


def resize_image(image_uint8, new_h, new_w, *, interpolation="pil"):
  """Bilinear resize of uint8 pixels.

  Args:
    image_uint8: ``[H, W, 3]`` uint8.
    new_h: output height.
    new_w: output width.
    interpolation: ``"pil"`` (PIL's bilinear, antialiased when shrinking) or ``"opencv"``
      (``cv2.resize`` ``INTER_LINEAR``: no antialias, OpenCV's fixed-point rounding, as
      ``cv2.dnn.blobFromImage``).

  Returns:
    ``[new_h, new_w, 3]`` uint8 (the input itself when the size is unchanged).
  """
  h, w = image_uint8.shape[:2]
  if (h, w) == (new_h, new_w):
    return image_uint8
  if interpolation == "opencv":
    import cv2  # pylint: disable=g-import-not-at-top  (a heavy import, only for Darknet models)
    return cv2.resize(np.ascontiguousarray(image_uint8), (new_w, new_h),
                      interpolation=cv2.INTER_LINEAR)
  if interpolation != "pil":
    raise ValueError(f"uint8 resampling is 'pil' or 'opencv', got {interpolation!r}")
  pil = Image.fromarray(np.ascontiguousarray(image_uint8))
  return np.asarray(pil.resize((new_w, new_h), Image.BILINEAR))


def letterbox_image(image_uint8, size, *, interpolation="pil"):
  """Top-left letterbox of one image to ``size x size``.

  Args:
    image_uint8: ``[H, W, 3]`` uint8.
    size: side of the square output ``S``.
    interpolation: ``"pil"`` or ``"opencv"`` (``resize_image``).

  Returns:
    ``(image [S, S, 3] uint8, scale (sx, sy) float tuple)`` where ``sx = new_w / w`` and
    ``sy = new_h / h`` map original pixel coordinates to output pixels (both equal
    ``letterbox_scale`` up to the rounding of the short side, less than half a pixel).
  """
  h, w = image_uint8.shape[:2]
  new_h, new_w = letterbox_shape(h, w, size)
  resized = resize_image(image_uint8, new_h, new_w, interpolation=interpolation)
  out = np.zeros((size, size, 3), np.uint8)
  out[:new_h, :new_w] = resized
  return out, (new_w / w, new_h / h)


def torch_source_index(in_size: int, out_size: int):
  """Taps of ``F.interpolate(mode="bilinear", align_corners=False)`` along one axis (ATen's
  ``compute_source_index_and_lambda``).

  The source coordinate is ``scale * (i + 0.5) - 0.5`` with ``scale = in / out`` in float32,
  rounded once as the fused multiply-add of ATen's vectorized CPU kernels (x86-64 with AVX2 and
  newer), then clamped at 0.

  Args:
    in_size: input length.
    out_size: output length.

  Returns:
    ``(i0 int64 [out], i1 int64 [out], w0 float32 [out], w1 float32 [out])``: output ``o`` is
    ``w0[o] * x[i0[o]] + w1[o] * x[i1[o]]``.
  """
  if in_size == out_size:  # ATen copies
    index = np.arange(out_size)
    return index, index, np.ones(out_size, np.float32), np.zeros(out_size, np.float32)
  scale = np.float32(in_size) / np.float32(out_size)
  centres = np.arange(out_size, dtype=np.float32) + np.float32(0.5)
  # float64 holds the float32 product exactly, so one rounding to float32 = the fused op.
  real = (np.float64(scale) * centres.astype(np.float64) - 0.5).astype(np.float32)
  real = np.maximum(real, np.float32(0))
  i0 = np.minimum(np.floor(real).astype(np.int64), in_size - 1)
  w1 = np.clip(real - i0.astype(np.float32), 0, 1).astype(np.float32)
  i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
  return i0, i1, (np.float32(1) - w1).astype(np.float32), w1


def torch_bilinear(image, new_h, new_w):
  """``F.interpolate(image, (new_h, new_w), mode="bilinear", align_corners=False)`` of one
  ``[H, W, C]`` float32 image (no antialias), in NumPy: torchvision's detection resize.

  Args:
    image: ``[H, W, C]`` float32.
    new_h: output height.
    new_w: output width.

  Returns:
    ``[new_h, new_w, C]`` float32.
  """
  image = np.asarray(image, np.float32)
  h0, h1, a0, a1 = torch_source_index(image.shape[0], new_h)
  w0, w1, b0, b1 = torch_source_index(image.shape[1], new_w)
  b0, b1 = b0[None, :, None], b1[None, :, None]
  top, bottom = image[h0], image[h1]
  rows0 = top[:, w0] * b0 + top[:, w1] * b1
  rows1 = bottom[:, w0] * b0 + bottom[:, w1] * b1
  return rows0 * a0[:, None, None] + rows1 * a1[:, None, None]


def mean_pixel(pre: Preprocess) -> tuple[int, int, int]:
  """The uint8 RGB pixel nearest the normalization's mean: what normalizes to ~0 (training pads
  with it for the ``"rcnn"`` rule, whose padding is 0 after normalization)."""
  mean = np.asarray(pre.mean, np.float64) * (255.0 / pre.value_range)
  return tuple(int(v) for v in np.clip(np.round(mean), 0, 255))


def pad_value(pre: Preprocess) -> np.ndarray:
  """float32 ``[3]``: the normalized value of padding pixels (the rule's pad, module docstring):
  0 for ``"rcnn"``, the normalization of a black pixel otherwise."""
  if pre.resize == "rcnn":
    return np.zeros(3, np.float32)
  return _affine(pre)[1].copy()


def resize_normalized(image_uint8, new_h, new_w, pre: Preprocess):
  """One image resized to ``new_h x new_w`` and normalized, by the model's interpolation.

  ``"torch"`` normalizes first and resizes the float image (torchvision's order); ``"pil"`` and
  ``"opencv"`` resize the uint8 pixels, then normalize.

  Args:
    image_uint8: ``[H, W, 3]`` uint8.
    new_h: output height.
    new_w: output width.
    pre: the model's ``Preprocess``.

  Returns:
    ``[new_h, new_w, 3]`` float32, normalized.
  """
  if pre.interpolation == "torch":
    return torch_bilinear(normalize_image(image_uint8, pre), new_h, new_w)
  resized = resize_image(image_uint8, new_h, new_w, interpolation=pre.interpolation)
  return normalize_image(resized, pre)


def network_input(image_uint8, size, pre: Preprocess, canvas=None):
  """One image as the network sees it: resized by the rule, normalized, top-left on a canvas
  filled with the rule's pad value.

  Args:
    image_uint8: ``[H, W, 3]`` uint8.
    size: S, the model's square input side (``config.image_size``).
    pre: the model's ``Preprocess``.
    canvas: ``(Hc, Wc)`` of the output; default ``(S, S)``, or for the ``"rcnn"`` rule the
      image's own padded extent (``padded_shape``). Must hold the resized image.

  Returns:
    ``(image float32 [Hc, Wc, 3], (new_h, new_w))``: the resized image's extent in it.

  Raises:
    ValueError: the canvas is smaller than the resized image.
  """
  h, w = image_uint8.shape[:2]
  new_h, new_w = resized_shape(h, w, size, pre)
  if canvas is None:
    canvas = padded_shape(new_h, new_w, pre) if pre.resize == "rcnn" else (size, size)
  if new_h > canvas[0] or new_w > canvas[1]:
    raise ValueError(f"a {h}x{w} image resized by the {pre.resize!r} rule is {new_h}x{new_w}, "
                     f"larger than the {canvas[0]}x{canvas[1]} input; image_size must be at "
                     f"least max_size ({pre.max_size}) for the 'rcnn' rule")
  out = np.empty((canvas[0], canvas[1], 3), np.float32)
  out[...] = pad_value(pre)
  out[:new_h, :new_w] = resize_normalized(image_uint8, new_h, new_w, pre)
  return out, (new_h, new_w)
