"""Image normalization and the evaluation letterbox shared by every stage.

The evaluation resize is a letterbox anchored at the top-left corner: the image is resized by
``scale = size / max(h, w)`` and padded with zeros on the right and bottom (in uint8 space). The
trainer's eval, ``jaxdet.load(...).predict`` and the ONNX graph all use exactly this.
"""

import numpy as np
from PIL import Image

# ImageNet statistics in 0..255 units (RGB).
MEAN_RGB = (123.675, 116.28, 103.53)
STD_RGB = (58.395, 57.12, 57.375)
_INV_STD = (1.0 / np.asarray(STD_RGB, np.float64)).astype(np.float32)
_BIAS = (-np.asarray(MEAN_RGB, np.float64) / np.asarray(STD_RGB, np.float64)).astype(np.float32)


def normalize_image(images_uint8):
  """Maps uint8 RGB pixels to normalized float32: ``(x - MEAN_RGB) / STD_RGB``.

  Works on NumPy arrays (returns NumPy) and on JAX arrays / tracers (returns JAX), so the same
  function serves the input pipeline, the jitted ``Detector.forward`` and the ONNX export.

  Args:
    images_uint8: ``[..., H, W, 3]`` uint8 (any integer or float dtype in 0..255 is accepted).

  Returns:
    ``[..., H, W, 3]`` float32.
  """
  if isinstance(images_uint8, np.ndarray):
    # Two fused passes, no float temporary: x * (1 / std) + (-mean / std). Same float32 result
    # as the formula up to rounding (|diff| < 1e-6).
    out = np.multiply(images_uint8, _INV_STD, dtype=np.float32)
    out += _BIAS
    return out
  import jax.numpy as xp  # pylint: disable=g-import-not-at-top
  x = xp.asarray(images_uint8).astype(xp.float32)
  mean = xp.asarray(MEAN_RGB, dtype=xp.float32)
  std = xp.asarray(STD_RGB, dtype=xp.float32)
  return (x - mean) / std


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
