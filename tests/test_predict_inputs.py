"""`jaxdet.predict_inputs`: what both predictors accept, EXIF orientation, and errors that name the
input as the user passed it."""

import numpy as np
import pytest
from PIL import Image

from jaxdet import predict_inputs


def exif_rotated_jpeg(path, *, height=24, width=40):
  """Writes a JPEG whose stored pixels are ``[height, width]`` with EXIF Orientation=6 (shown
  rotated 90 degrees clockwise, i.e. ``[width, height]``). Returns the stored pixels."""
  stored = np.zeros((height, width, 3), np.uint8)
  stored[: height // 2, : width // 2] = (255, 0, 0)  # red block at the stored top-left
  exif = Image.Exif()
  exif[0x0112] = 6  # Orientation: rotate 90 CW to display
  Image.fromarray(stored).save(path, quality=100, subsampling=0, exif=exif)
  return stored


def test_paths_are_read_as_displayed_exif_transpose(tmp_path):
  stored = exif_rotated_jpeg(tmp_path / "phone.jpg")
  for path in (tmp_path / "phone.jpg", str(tmp_path / "phone.jpg")):
    (image,) = predict_inputs.as_image_list(path)
    assert image.shape == (40, 24, 3) and image.dtype == np.uint8
    # Orientation 6: the stored top-left block is displayed at the top-right (JPEG blurs edges).
    want = np.rot90(stored, k=-1)
    assert np.abs(image.astype(int) - want).mean() < 4


def test_accepted_inputs_give_lists_of_rgb_images(tmp_path):
  a = np.full((10, 20, 3), 7, np.uint8)
  b = np.full((30, 5, 3), 9, np.uint8)
  Image.fromarray(b).save(tmp_path / "b.png")
  gray = Image.fromarray(np.full((6, 8), 50, np.uint8))
  rgba = Image.fromarray(np.full((4, 3, 4), 60, np.uint8))
  cases = [
      (np.stack([a, a]), [(10, 20, 3)] * 2),
      (a, [(10, 20, 3)]),
      ([a, b], [(10, 20, 3), (30, 5, 3)]),
      ((a, str(tmp_path / "b.png"), gray, rgba), [(10, 20, 3), (30, 5, 3), (6, 8, 3), (4, 3, 3)]),
      (gray, [(6, 8, 3)]),
  ]
  for images, shapes in cases:
    got = predict_inputs.as_image_list(images)
    assert [g.shape for g in got] == shapes and all(g.dtype == np.uint8 for g in got)
  np.testing.assert_array_equal(predict_inputs.as_image_list([a, tmp_path / "b.png"])[1], b)


@pytest.mark.parametrize("images, match", [
    # What the user passed, not the batch it was turned into.
    (np.zeros((1, 256, 256), np.uint8), r"got shape \(1, 256, 256\)$"),
    (np.zeros((256, 256), np.uint8), r"got shape \(256, 256\)$"),
    (np.zeros((2, 8, 8, 3), np.float32), r"uint8.*got dtype float32"),
    ([np.zeros((8, 8, 3), np.uint8), np.zeros((1, 8, 8, 3), np.uint8)],
     r"images\[1\] .*got shape \(1, 8, 8, 3\)"),
    ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.int64)], r"images\[1\] .*int64"),
    (np.zeros((0, 8, 8, 3), np.uint8), "empty"),
    ([], "empty"),
    (42, "got int$"),
    ({"image": 1}, "got dict$"),
    ("https://example.com/cat.jpg", "URLs are not supported"),
])
def test_errors_name_the_input_as_passed(images, match):
  with pytest.raises(ValueError, match=match) as exc:
    predict_inputs.as_image_list(images)
  assert "<U" not in str(exc.value) and "got ()" not in str(exc.value)


def test_path_errors_name_the_path(tmp_path):
  missing = str(tmp_path / "missing_photo_with_a_long_name.jpg")
  with pytest.raises(FileNotFoundError, match="image not found: .*missing_photo"):
    predict_inputs.as_image_list(missing)
  broken = tmp_path / "truncated.jpg"
  broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
  with pytest.raises(ValueError, match="cannot read image .*truncated.jpg"):
    predict_inputs.as_image_list([broken])


def test_letterbox_round_trip():
  images = [np.zeros((32, 64, 3), np.uint8), np.zeros((16, 16, 3), np.uint8)]
  inputs, scale, limits = predict_inputs.resize_batch(images, 16)
  assert inputs.shape == (2, 16, 16, 3)
  np.testing.assert_allclose(scale, [[0.25, 0.25], [1, 1]])
  boxes = np.array([[[0, 0, 8, 4], [1, 1, 2, 2]], [[0, 0, 20, 20], [1, 1, 2, 2]]], np.float32)
  out = predict_inputs.boxes_to_images(boxes, scale, limits, np.array([1, 2]))
  np.testing.assert_allclose(out, [[[0, 0, 32, 16], [0, 0, 0, 0]],
                                   [[0, 0, 16, 16], [1, 1, 2, 2]]])
