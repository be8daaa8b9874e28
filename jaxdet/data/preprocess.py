"""Preprocessing belongs to the model: normalization and the resize rule, read from
``config.model.preprocess`` by every stage (the trainer's input pipeline, ``jaxdet.load(...)``
and the ONNX graph).

``config.model.preprocess`` (all optional; a model config without it gets today's defaults):

- ``mean``, ``std``: 3 floats each, in the units of ``value_range``;
- ``value_range``: 255.0 (pixels in 0..255, jaxdet's default) or 1.0 (pixels divided by 255 first,
  torchvision); the normalized image is ``(uint8 / 255 * value_range - mean) / std``, float32;
- ``resize``: ``"letterbox"`` (``scale = S / max(h, w)``, padded with zeros on the right and bottom
  in uint8 space, anchored top-left: torchvision's GeneralizedRCNNTransform at
  min_size = max_size = S) or ``"stretch"`` (resized to S x S ignoring the aspect ratio, as
  torchvision's SSD).
"""

import dataclasses
import functools

import numpy as np
from PIL import Image

# ImageNet statistics in 0..255 units (RGB): the defaults of `config.model.preprocess`.
MEAN_RGB = (123.675, 116.28, 103.53)
STD_RGB = (58.395, 57.12, 57.375)
RESIZE_RULES = ("letterbox", "stretch")


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """Resolved ``config.model.preprocess`` (hashable: usable as a jit static argument).

  Attributes:
    mean: 3 floats, in units of ``value_range``.
    std: 3 floats, in units of ``value_range``.
    value_range: the pixel scale the model expects (255.0 or 1.0).
    resize: ``"letterbox"`` or ``"stretch"``.
  """
  mean: tuple = MEAN_RGB
  std: tuple = STD_RGB
  value_range: float = 255.0
  resize: str = "letterbox"


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
  return Preprocess(mean=mean, std=std, value_range=float(out.value_range), resize=out.resize)


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
  """One image to the ``size x size`` network input by the model's resize rule.

  Args:
    image_uint8: ``[H, W, 3]`` uint8.
    size: side of the square output ``S``.
    resize: ``"letterbox"`` (``letterbox_image``) or ``"stretch"`` (``stretch_image``); a
      ``Preprocess`` is accepted too.

  Returns:
    ``(image [S, S, 3] uint8, (sx, sy))``, network pixels per input pixel along x and y.
  """
  rule = resize.resize if isinstance(resize, Preprocess) else resize
  if rule == "letterbox":
    return letterbox_image(image_uint8, size)
  if rule == "stretch":
    return stretch_image(image_uint8, size)
  raise ValueError(f"resize must be one of {RESIZE_RULES}, got {rule!r}")


def stretch_image(image_uint8, size):
  """Resizes one image to ``size x size`` ignoring its aspect ratio (torchvision SSD).

  Args:
    image_uint8: ``[H, W, 3]`` uint8.
    size: side of the square output ``S``.

  Returns:
    ``(image [S, S, 3] uint8, (sx, sy))`` with ``sx = S / w``, ``sy = S / h``.
  """
  h, w = image_uint8.shape[:2]
  return resize_image(image_uint8, size, size), (size / w, size / h)


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


def resize_image(image_uint8, new_h, new_w):
  """Bilinear (antialiased when shrinking) resize with PIL.

  Args:
    image_uint8: ``[H, W, 3]`` uint8.
    new_h: output height.
    new_w: output width.

  Returns:
    ``[new_h, new_w, 3]`` uint8 (the input itself when the size is unchanged).
  """
  h, w = image_uint8.shape[:2]
  if (h, w) == (new_h, new_w):
    return image_uint8
  pil = Image.fromarray(np.ascontiguousarray(image_uint8))
  return np.asarray(pil.resize((new_w, new_h), Image.BILINEAR))


def letterbox_image(image_uint8, size):
  """Top-left letterbox of one image to ``size x size``.

  Args:
    image_uint8: ``[H, W, 3]`` uint8.
    size: side of the square output ``S``.

  Returns:
    ``(image [S, S, 3] uint8, scale (sx, sy) float tuple)`` where ``sx = new_w / w`` and
    ``sy = new_h / h`` map original pixel coordinates to output pixels (both equal
    ``letterbox_scale`` up to the rounding of the short side, less than half a pixel).
  """
  h, w = image_uint8.shape[:2]
  new_h, new_w = letterbox_shape(h, w, size)
  resized = resize_image(image_uint8, new_h, new_w)
  out = np.zeros((size, size, 3), np.uint8)
  out[:new_h, :new_w] = resized
  return out, (new_w / w, new_h / h)
