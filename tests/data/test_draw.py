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


def test_enlarge_by_an_integer_factor_keeps_pixels_sharp():
  image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
  big, factor = draw.enlarge(image, 10)  # ceil(10 / 3) = 4
  assert factor == 4 and big.shape == (8, 12, 3)
  np.testing.assert_array_equal(big[::4, ::4], image)
  np.testing.assert_array_equal(big[7, 11], image[1, 2])  # nearest: no blending
  photo = np.zeros((400, 300, 3), np.uint8)
  same, factor = draw.enlarge(photo)  # already large: as it is
  assert factor == 1 and same is photo


def test_detection_tile_is_large_with_readable_labels():
  """Issue 28: training's predictions.png drew boxes and 10 px labels on the 64-128 px network
  inputs (a 6-image grid was 392x262 px); a tile is now at least MIN_TILE px, boxes scaled."""
  image = np.zeros((64, 48, 3), np.uint8)
  tile = draw.detection_tile(image, [[8, 32, 24, 56]], [1], [0.87], class_names=["a", "bee"])
  assert tile.shape == (384, 288, 3)  # x6: the longer side reaches MIN_TILE = 384
  assert tile[300, 48].any() and not tile[300, 52:140].any()  # left edge at 8 x 6, hollow
  label = np.nonzero(tile[:192, 50].any(-1))[0]  # the filled label box above the box
  assert len(label) >= draw.TILE_FONT - 2, len(label)
  default = draw.draw_detections(np.zeros((384, 288, 3), np.uint8), [[48, 192, 144, 336]], [1],
                                 [0.87], class_names=["a", "bee"])
  assert len(label) > len(np.nonzero(default[:192, 50].any(-1))[0])  # larger than label_size's


def test_mask_tile_is_large_with_a_legend_of_its_classes():
  image = np.full((32, 32, 3), 100, np.uint8)
  mask = np.zeros((32, 32), np.int32)
  mask[16:, 16:] = 2
  tile = draw.mask_tile(image, mask, ["background", "a", "b"])
  assert tile.shape == (384, 384, 3)  # x12
  np.testing.assert_array_equal(tile[300, 300], draw.overlay_mask(image, mask)[25, 25])
  assert (tile[:60, :60] == draw.MASK_PALETTE[2]).all(-1).any()  # class b's swatch, top-left
  named = draw.mask_tile(image, mask, ["background", "a", "bicycle"])
  assert not np.array_equal(named[:60], tile[:60])  # its name is written
  np.testing.assert_array_equal(draw.mask_tile(image, np.zeros((32, 32), int)), 100)  # no legend


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
