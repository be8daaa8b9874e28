"""read_image / image_size / encode_for_dataset: EXIF orientation, modes, corrupt files."""

import io

import numpy as np
import pytest
from PIL import Image

from jaxdet.data import image_io


def _stored_with_orientation(path, stored, orientation):
  exif = Image.Exif()
  exif[0x0112] = orientation
  Image.fromarray(stored).save(path, format="JPEG", quality=95, exif=exif)


def test_exif_orientation_applied(tmp_path):
  stored = np.zeros((20, 40, 3), np.uint8)  # stored 20x40 (h x w), displayed 40x20
  stored[:, :10] = 255  # white band on the stored left edge
  path = str(tmp_path / "rot.jpg")
  _stored_with_orientation(path, stored, 6)  # 6: rotate 90 degrees clockwise to display
  img = image_io.read_image(path)
  assert img.shape == (40, 20, 3) and img.dtype == np.uint8
  assert img[:10].mean() > 200 and img[-10:].mean() < 50  # the left band is now at the top
  assert image_io.image_size(path) == (40, 20)
  data, h, w = image_io.encode_for_dataset(path)
  assert (h, w) == (40, 20)
  with Image.open(io.BytesIO(data)) as im:  # re-encoded: EXIF-blind readers see it displayed
    assert im.size == (20, 40)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "I;16"])
def test_modes_become_rgb(tmp_path, mode):
  path = str(tmp_path / "x.png")
  Image.new("RGB", (7, 5), (10, 20, 30)).convert(mode).save(path)
  img = image_io.read_image(path)
  assert img.shape == (5, 7, 3) and img.dtype == np.uint8
  data, h, w = image_io.encode_for_dataset(path)
  assert (h, w) == (5, 7)


def test_rgb_jpeg_bytes_kept(tmp_path):
  path = tmp_path / "a.jpg"
  Image.new("RGB", (8, 6)).save(path)
  data, h, w = image_io.encode_for_dataset(str(path))
  assert data == path.read_bytes() and (h, w) == (6, 8)


def test_corrupt_and_truncated_files(tmp_path):
  bad = tmp_path / "bad.png"
  bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
  full = io.BytesIO()
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
      full, format="JPEG")
  cut = tmp_path / "cut.jpg"
  cut.write_bytes(full.getvalue()[:len(full.getvalue()) // 2])
  for path in (bad, cut, tmp_path / "missing.jpg"):
    with pytest.raises(image_io.ImageReadError, match=path.name) as e:
      image_io.read_image(str(path))
    assert "\n" not in str(e.value)


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
  """PIL's convert('RGB') clips 16-bit values at 255: a 16-bit PNG photo read as all white."""
  values = np.random.default_rng(0).integers(0, 256, (12, 20)).astype(np.uint16)
  path = tmp_path / "g16.png"
  Image.fromarray(values * 257).save(path)
  with Image.open(path) as im:
    assert im.mode.startswith("I")
  got = image_io.read_image(path)
  assert got.shape == (12, 20, 3) and got.dtype == np.uint8
  np.testing.assert_array_equal(got[..., 0], values)
  np.testing.assert_array_equal(got[..., 2], values)
  data, h, w = image_io.encode_for_dataset(path)
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data)))[..., 1], values)
