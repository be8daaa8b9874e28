import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet.data import preprocess


def test_normalize_matches_loop_numpy_and_jax():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)
  expected = np.empty(images.shape, np.float32)
  for idx in np.ndindex(images.shape):
    c = idx[-1]
    expected[idx] = (float(images[idx]) - preprocess.MEAN_RGB[c]) / preprocess.STD_RGB[c]
  out_np = preprocess.normalize_image(images)
  assert isinstance(out_np, np.ndarray)
  chex.assert_type(out_np, np.float32)
  np.testing.assert_allclose(out_np, expected, rtol=1e-6)
  out_jax = jax.jit(preprocess.normalize_image)(jnp.asarray(images))
  chex.assert_type(out_jax, jnp.float32)
  np.testing.assert_allclose(np.asarray(out_jax), expected, rtol=1e-6)


@pytest.mark.parametrize("h,w,size", [(100, 200, 64), (200, 100, 64), (64, 64, 64),
                                      (33, 500, 128), (10, 10, 256)])
def test_letterbox_top_left(h, w, size):
  rng = np.random.default_rng(1)
  image = rng.integers(1, 256, (h, w, 3), dtype=np.uint8)
  out, (sx, sy) = preprocess.letterbox_image(image, size)
  chex.assert_shape(out, (size, size, 3))
  chex.assert_type(out, np.uint8)
  new_h, new_w = preprocess.letterbox_shape(h, w, size)
  assert max(new_h, new_w) == size
  assert abs(sx - preprocess.letterbox_scale(h, w, size)) * w <= 0.5 + 1e-9
  assert abs(sy - preprocess.letterbox_scale(h, w, size)) * h <= 0.5 + 1e-9
  np.testing.assert_allclose([sx, sy], [new_w / w, new_h / h])
  # Padding is right/bottom, zeros; content top-left.
  assert np.all(out[new_h:] == 0) and np.all(out[:, new_w:] == 0)
  if (h, w) == (size, size):
    np.testing.assert_array_equal(out, image)
