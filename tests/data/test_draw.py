import numpy as np

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
