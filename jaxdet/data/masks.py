"""Semantic masks (NumPy + PIL only): the stored feature, and moving a mask with its image.

Convention (DESIGN.md): uint8 class ids per pixel, **0 = background, k + 1 = detection label k,
255 = ignore** (VOC object boundaries, padding, palette values outside the class range).
Masks are resampled by nearest neighbour (class ids are never blended) and padded with 255.
"""

import io

import numpy as np
from PIL import Image

MASK_FEATURE = "segmentation/mask"
IGNORE = 255


def encode_mask(mask):
  """uint8 ``[H, W]`` class ids -> grayscale PNG bytes (what the ``segmentation/mask`` feature
  stores)."""
  m = np.asarray(mask)
  if m.ndim != 2 or m.dtype != np.uint8:
    raise ValueError(f"a mask must be uint8 [H, W], got {m.dtype} {m.shape}")
  buf = io.BytesIO()
  Image.fromarray(m, mode="L").save(buf, format="PNG")
  return buf.getvalue()


def check_mask(mask, image_shape, *, where="mask"):
  """A stored mask as uint8 ``[H, W]`` (a trailing channel of 1 squeezed), checked against its
  image.

  Args:
    mask: ``[H, W]`` or ``[H, W, 1]`` integer class ids.
    image_shape: the image's shape ``(H, W, ...)``.
    where: what to name in the error (a file, an image id).

  Returns:
    ``[H, W]`` uint8.

  Raises:
    ValueError: the mask is not the image's size (one line naming both sizes).
  """
  m = np.asarray(mask)
  if m.ndim == 3 and m.shape[-1] == 1:
    m = m[..., 0]
  h, w = image_shape[:2]
  if m.ndim != 2 or m.shape != (h, w):
    raise ValueError(f"{where}: mask of size {'x'.join(map(str, m.shape[::-1]))} (w x h) but its "
                     f"image is {w}x{h}; a mask must have its image's size")
  return m.astype(np.uint8, copy=False)


def resize_mask_window(mask, size_hw, box):
  """Nearest-neighbour resample of the source window ``box`` (x0, y0, x1, y1, float source
  pixels) of a mask onto ``size_hw = (h, w)`` output pixels: the same mapping as PIL's resize of
  the image with that ``box``, so the mask stays aligned with the image.

  Returns:
    ``[h, w]`` uint8.
  """
  pil = Image.fromarray(np.ascontiguousarray(mask, np.uint8), mode="L")
  return np.asarray(pil.resize((int(size_hw[1]), int(size_hw[0])), Image.NEAREST, box=box))


def resize_mask(mask, new_h, new_w):
  """Nearest-neighbour resize of a whole ``[H, W]`` mask to ``[new_h, new_w]`` uint8."""
  h, w = mask.shape[:2]
  if (h, w) == (new_h, new_w):
    return np.asarray(mask, np.uint8)
  return resize_mask_window(mask, (new_h, new_w), (0, 0, w, h))


def mask_to_input(mask, size, resize="letterbox"):
  """A mask to the ``size x size`` network input by the model's resize rule, as
  ``jaxdet.data.preprocess.network_input`` moves its image (nearest neighbour; padding is
  255 = ignore).

  Args:
    mask: ``[H, W]`` uint8 class ids.
    size: side ``S``.
    resize: ``"letterbox"`` or ``"stretch"``, or a ``Preprocess`` (any rule: ``"rcnn"`` places
      the resized mask top-left, as the image).

  Returns:
    ``[S, S]`` uint8.
  """
  from jaxdet.data import preprocess  # pylint: disable=g-import-not-at-top
  pre = resize if isinstance(resize, preprocess.Preprocess) else None
  rule = pre.resize if pre is not None else resize
  if rule not in preprocess.RESIZE_RULES:
    raise ValueError(f"resize must be one of {preprocess.RESIZE_RULES}, got {rule!r}")
  h, w = mask.shape[:2]
  new_h, new_w = preprocess.resized_shape(h, w, size, pre or preprocess.Preprocess(resize=rule))
  out = np.full((size, size), IGNORE, np.uint8)
  out[:new_h, :new_w] = resize_mask(mask, new_h, new_w)
  return out


def class_index_mask(values, num_classes):
  """Maps raw per-pixel values (a palette PNG's indices) to the convention: ``0..C`` kept, 255
  kept, anything else -> 255.

  Args:
    values: ``[H, W]`` integer palette indices.
    num_classes: ``C`` detection classes (valid ids 0..C).

  Returns:
    ``(mask [H, W] uint8, num_out_of_range int)``: the pixels mapped to 255 that were not 255.
  """
  v = np.asarray(values).astype(np.int64)
  bad = ((v < 0) | (v > num_classes)) & (v != IGNORE)
  return np.where(bad, IGNORE, v).astype(np.uint8), int(bad.sum())


def read_index_png(path):
  """The per-pixel indices of a palette (``P``) or grayscale (``L``) PNG as ``[H, W]`` int64
  (VOC ``SegmentationClass``: the palette index is the class id, 255 the boundary).

  Raises:
    ValueError: unreadable, or an RGB image (colours are not class ids).
  """
  try:
    with Image.open(path) as im:
      if im.mode not in ("P", "L", "I", "I;16"):
        raise ValueError(f"{path}: a mask must be a palette or grayscale image holding class ids "
                         f"per pixel, got mode {im.mode}")
      return np.asarray(im).astype(np.int64)
  except (OSError, SyntaxError) as e:
    raise ValueError(f"{path}: unreadable mask image ({e})") from e
