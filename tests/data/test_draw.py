import numpy as np
import pytest

from jaxdet.data import draw


def test_draw_detections_draws_box_outline():
  image = np.zeros((64, 80, 3), np.uint8)
  out = draw.draw_detections(image, np.array([[10, 20, 50, 60], [0, 0, 5, 5]], np.float32),
                             np.array([1, 2]), scores=np.array([0.9, 0.1]),
                             class_names=["a", "b", "c"], mask=np.array([True, False]),
                             line_width=1)
  assert out.shape == image.shape and out.dtype == np.uint8
  np.testing.assert_array_equal(image, 0)  # input untouched
  # Left edge of the kept box is drawn below the label, the masked box is not drawn.
  assert out[40, 10].any() and out[59, 30].any()
  assert not out[30:50, 20:40].any()  # interior untouched
  assert not out[3, 3].any()


def test_save_grid(tmp_path):
  from PIL import Image
  ims = [np.full((10, 12, 3), i * 40, np.uint8) for i in range(5)]
  grid = draw.save_grid(ims, str(tmp_path / "sub" / "g.png"), pad=1)
  assert grid.shape == (2 * 11 + 1, 3 * 13 + 1, 3)
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "sub" / "g.png")), grid)
  np.testing.assert_array_equal(grid[12:22, 1:13], ims[3])


def test_grid_shrinks_large_images_to_tiles(tmp_path):
  """Issue 10: a 3000x2000 photo made a 15012x10012 grid and PIL's decompression-bomb warning."""
  import warnings
  from PIL import Image
  big = np.zeros((2000, 3000, 3), np.uint8)
  big[:1000] = 200
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    grid = draw.save_grid([big] * 4, str(tmp_path / "g.png"), pad=2)
    assert grid.shape == (2 * (427 + 2) + 2, 2 * (640 + 2) + 2, 3)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "g.png")), grid)
  assert grid[100, 100, 0] == 200 and grid[400, 100, 0] == 0  # shrunk, not cropped
  small = np.full((30, 40, 3), 9, np.uint8)
  assert draw.fit_tile(small) is small or np.array_equal(draw.fit_tile(small), small)


def test_labels_grow_with_the_image():
  text_small, width_small = draw.label_size(128, 128)
  text_big, width_big = draw.label_size(2000, 3000)
  assert text_small <= 12 and width_small == 2 and text_big >= 60 and width_big >= 6

  def label_height(side):
    image = np.zeros((side, side, 3), np.uint8)
    out = draw.draw_detections(image, [[side // 4, side // 2, side // 2, side * 3 // 4]], [0],
                               class_names=["cat"])
    rows = np.nonzero(out[:side // 2 + 1, side // 4 + 1].any(-1))[0]  # the filled label box
    return len(rows)

  assert label_height(2000) > 4 * label_height(200)


def test_korean_class_names_render_with_real_glyphs():
  """Issue 10: `고양이` must not come out as missing-glyph boxes (and no warnings)."""
  import warnings
  path, index = draw.font_file_for("고양이 coffee cup 0.93")
  from fontTools import ttLib
  cmap = ttLib.TTFont(path, fontNumber=index).getBestCmap()
  assert all(ord(c) in cmap for c in "고양이coffeecup0.93")
  image = np.zeros((200, 300, 3), np.uint8)
  boxes = np.array([[50, 100, 150, 180]], np.float32)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    one = draw.draw_detections(image, boxes, [0], class_names=["고양이"])
    other = draw.draw_detections(image, boxes, [0], class_names=["양고이"])
  # Missing glyphs all draw the same box: different syllables must give different pixels.
  assert not np.array_equal(one, other)


def test_colorize_and_overlay_mask():
  mask = np.array([[0, 1, 2], [15, 255, 0]])
  colours = draw.colorize_mask(mask)
  assert colours.shape == (2, 3, 3) and colours.dtype == np.uint8
  # VOC's palette: background black, 1 (128, 0, 0), 2 (0, 128, 0), 15 (192, 128, 128); ignore white.
  np.testing.assert_array_equal(colours[0], [[0, 0, 0], [128, 0, 0], [0, 128, 0]])
  np.testing.assert_array_equal(colours[1], [[192, 128, 128], [255, 255, 255], [0, 0, 0]])
  image = np.full((2, 3, 3), 100, np.uint8)
  out = draw.overlay_mask(image, mask, alpha=0.5)
  np.testing.assert_array_equal(out[mask == 0], 100)  # background keeps the image
  np.testing.assert_array_equal(out[0, 1], [114, 50, 50])
  with pytest.raises(ValueError, match="same size"):
    draw.overlay_mask(image, mask[:, :2])
