"""Reading image files as displayed: EXIF orientation applied, any mode converted to RGB.

Every place that reads an image file (importers, ``data show``, ``predict``, ``export.Detector``
on paths) goes through here, so annotations made on the displayed picture (as in every labelling
tool) match the pixels jaxdet sees. PIL only (no TensorFlow), cheap to import.
"""

import io

import numpy as np

_ORIENTATION_TAG = 0x0112  # EXIF Orientation; values 5-8 swap width and height
_SWAPS_AXES = (5, 6, 7, 8)


class ImageReadError(ValueError):
  """An image file that cannot be decoded; the one-line message names the file."""


def _open(path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    return Image.open(path)
  except FileNotFoundError as e:
    raise ImageReadError(f"image file not found: {path}") from e
  except Exception as e:  # PIL raises many types for unknown / corrupt files
    raise ImageReadError(f"cannot read image {path}: {type(e).__name__}: {e}") from e


def _orientation(im):
  try:
    return int(im.getexif().get(_ORIENTATION_TAG, 1))
  except Exception:  # a broken EXIF block: PIL's exif_transpose ignores it too
    return 1


def _to_8bit(im):
  """16-bit (and 32-bit integer) grayscale -> 8-bit ``L``: PIL's own convert clips values above
  255 (a 16-bit photo became white). ``I`` images whose values fit 0..255 are kept as they are."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  a = np.asarray(im).astype(np.float64)
  if im.mode.startswith("I;16") or a.max(initial=0) > 255:
    a = a / 257.0  # 65535 -> 255
  return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def open_image(path):
  """Decodes ``path`` fully into an RGB ``PIL.Image`` as displayed (EXIF transpose applied).

  Raises:
    ImageReadError: missing, truncated or corrupt file (one line, names ``path``).
  """
  from PIL import ImageOps  # pylint: disable=g-import-not-at-top
  with _open(path) as im:
    try:
      im.load()  # decodes fully: truncated / corrupt files fail here, not later
      out = ImageOps.exif_transpose(im)
      if out.mode.startswith("I"):
        out = _to_8bit(out)
      if out.mode != "RGB":
        # Palette / LA images may carry transparency: go through RGBA so it is dropped cleanly.
        out = out.convert("RGBA") if out.mode in ("P", "LA", "PA") else out
        out = out.convert("RGB")
      return out
    except Exception as e:  # pylint: disable=broad-except
      raise ImageReadError(f"cannot read image {path}: {type(e).__name__}: {e}") from e


def read_image(path):
  """``path`` -> uint8 ``[H, W, 3]`` RGB array of the image as displayed (EXIF orientation).

  Grayscale, RGBA, palette and 16-bit images are converted to RGB.

  Raises:
    ImageReadError: missing, truncated or corrupt file (one line, names ``path``).
  """
  return np.asarray(open_image(path), np.uint8)


def image_size(path):
  """``(h, w)`` of ``path`` as displayed (EXIF orientation), reading only the header.

  Raises:
    ImageReadError: missing or unrecognised file.
  """
  with _open(path) as im:
    w, h = im.size
    return (w, h) if _orientation(im) in _SWAPS_AXES else (h, w)


def encode_for_dataset(path):
  """``(encoded bytes, h, w)`` of ``path`` as displayed, for storing in a dataset.

  An RGB JPEG / PNG without an EXIF rotation keeps its original bytes (no re-compression);
  anything else (rotated, grayscale, RGBA, other formats) is re-encoded as PNG after the transpose,
  so readers that ignore EXIF (``tf.image.decode_image``) see the displayed picture.

  Raises:
    ImageReadError: missing, truncated or corrupt file (one line, names ``path``).
  """
  with _open(path) as probe:
    keep = probe.format in ("JPEG", "PNG") and probe.mode == "RGB" and _orientation(probe) == 1
  im = open_image(path)  # decodes fully even when the bytes are kept: catches truncation
  w, h = im.size
  if keep:
    with open(path, "rb") as f:
      return f.read(), h, w
  buf = io.BytesIO()
  im.save(buf, format="PNG")
  return buf.getvalue(), h, w
