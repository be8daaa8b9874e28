import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

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


# torchvision's normalization: pixels / 255, ImageNet mean/std in 0..1 units.
TORCHVISION = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), value_range=1.0)


def test_normalize_torchvision_units_numpy_and_jax():
  rng = np.random.default_rng(2)
  images = rng.integers(0, 256, (2, 5, 4, 3), dtype=np.uint8)
  mean, std = np.float64(TORCHVISION["mean"]), np.float64(TORCHVISION["std"])
  expected = ((images / 255.0 - mean) / std).astype(np.float32)
  pre = preprocess.settings(TORCHVISION)
  out_np = preprocess.normalize_image(images, pre)
  chex.assert_type(out_np, np.float32)
  np.testing.assert_allclose(out_np, expected, rtol=1e-6, atol=1e-6)
  out_jax = jax.jit(preprocess.normalize_image, static_argnums=1)(jnp.asarray(images), pre)
  np.testing.assert_allclose(np.asarray(out_jax), expected, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(preprocess.denormalize_image(out_np, pre), images)


def test_settings_defaults_partial_configs_and_errors():
  import ml_collections
  assert preprocess.settings(None) == preprocess.DEFAULT
  assert preprocess.settings(preprocess.default_config()) == preprocess.DEFAULT
  assert preprocess.DEFAULT == preprocess.Preprocess(preprocess.MEAN_RGB, preprocess.STD_RGB,
                                                     255.0, "letterbox")
  partial = preprocess.settings(ml_collections.ConfigDict({"resize": "stretch"}))
  assert partial == preprocess.Preprocess(resize="stretch")
  assert preprocess.settings(dict(TORCHVISION, mean=[0.485, 0.456, 0.406])).mean == (
      0.485, 0.456, 0.406)
  # A model config without `preprocess` (an old checkpoint) gets the defaults.
  assert preprocess.of_model(ml_collections.ConfigDict({"name": "retinanet"})) == preprocess.DEFAULT
  assert preprocess.of_model(None) == preprocess.DEFAULT
  for bad, match in [({"resize": "crop"}, "resize"), ({"means": (1, 2, 3)}, "means"),
                     ({"std": (1, 2)}, "std"), ({"std": (1, 0, 1)}, "std"),
                     ({"value_range": 0}, "value_range"), ({"mean": "abc"}, "mean")]:
    with pytest.raises(ValueError, match=match):
      preprocess.settings(bad)


@pytest.mark.parametrize("h,w", [(100, 200), (64, 64), (31, 500)])
def test_stretch_and_resize_rule_dispatch(h, w):
  rng = np.random.default_rng(3)
  image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
  out, (sx, sy) = preprocess.resize_to_input(image, 64, "stretch")
  chex.assert_shape(out, (64, 64, 3))
  assert (sx, sy) == (64 / w, 64 / h)
  want = np.asarray(Image.fromarray(image).resize((64, 64), Image.BILINEAR))
  np.testing.assert_array_equal(out, want if (h, w) != (64, 64) else image)
  boxed, scale = preprocess.resize_to_input(image, 64, preprocess.DEFAULT)
  ref, ref_scale = preprocess.letterbox_image(image, 64)
  np.testing.assert_array_equal(boxed, ref)
  assert scale == ref_scale
  with pytest.raises(ValueError, match="resize"):
    preprocess.resize_to_input(image, 64, "crop")
