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


# torchvision's detection preprocessing (`jaxdet.convert.torchvision.rcnn_preprocess`).
RCNN = dict(TORCHVISION, resize="rcnn", interpolation="torch", min_size=96, max_size=160)


@pytest.mark.parametrize("h,w,new_h,new_w", [(400, 600, 96, 144), (600, 400, 144, 96),
                                             (120, 1000, 19, 160), (16, 20, 96, 120),
                                             (96, 96, 96, 96)])
def test_rcnn_shape_is_torchvisions_rule(h, w, new_h, new_w):
  """scale = min(min_size / short, max_size / long) in float64, sides int(side * scale)."""
  assert preprocess.rcnn_shape(h, w, 96, 160) == (new_h, new_w)
  pre = preprocess.settings(RCNN)
  assert preprocess.resized_shape(h, w, 999, pre) == (new_h, new_w)
  assert preprocess.padded_shape(new_h, new_w, pre) == (-(-new_h // 32) * 32, -(-new_w // 32) * 32)


@pytest.mark.torch
@pytest.mark.parametrize("h,w,new_h,new_w", [(520, 260, 1333, 666), (300, 451, 96, 144),
                                             (4000, 3000, 106, 80), (20, 20, 800, 800),
                                             (7, 5, 3, 2), (5, 5, 5, 9)])
def test_torch_bilinear_equals_f_interpolate(h, w, new_h, new_w):
  """`torch_bilinear` is `F.interpolate(mode="bilinear", align_corners=False)` (no antialias), up
  and down, odd sizes, one axis unchanged."""
  torch = pytest.importorskip("torch")
  image = np.random.default_rng(h + w).standard_normal((h, w, 3)).astype(np.float32)
  want = torch.nn.functional.interpolate(
      torch.from_numpy(image.transpose(2, 0, 1)[None].copy()), size=(new_h, new_w),
      mode="bilinear", align_corners=False)[0].numpy().transpose(1, 2, 0)
  np.testing.assert_allclose(preprocess.torch_bilinear(image, new_h, new_w), want, rtol=0,
                             atol=1e-6)


def test_opencv_interpolation_is_cv2_resize():
  cv2 = pytest.importorskip("cv2")
  image = np.random.default_rng(5).integers(0, 256, (37, 83, 3), dtype=np.uint8)
  pre = preprocess.settings(dict(resize="stretch", interpolation="opencv"))
  out, (sx, sy) = preprocess.resize_to_input(image, 64, pre)
  np.testing.assert_array_equal(out, cv2.resize(image, (64, 64), interpolation=cv2.INTER_LINEAR))
  assert (sx, sy) == (64 / 83, 64 / 37)


def test_network_input_rcnn_pads_zeros_after_normalization():
  image = np.random.default_rng(6).integers(0, 256, (30, 100, 3), dtype=np.uint8)
  pre = preprocess.settings(RCNN)
  out, (new_h, new_w) = preprocess.network_input(image, 999, pre)
  assert (new_h, new_w) == (48, 160) and out.shape == (64, 160, 3)  # padded to 32
  np.testing.assert_array_equal(out[new_h:], 0.0)
  np.testing.assert_array_equal(out[:new_h], preprocess.torch_bilinear(
      preprocess.normalize_image(image, pre), new_h, new_w))
  canvas, _ = preprocess.network_input(image, 160, pre, canvas=(160, 160))
  np.testing.assert_array_equal(canvas[:64], out[:64])
  np.testing.assert_array_equal(canvas[64:], 0.0)
  with pytest.raises(ValueError, match="at least max_size"):
    preprocess.network_input(image, 128, pre, canvas=(128, 128))


def test_network_input_letterbox_is_the_normalized_letterbox():
  """jaxdet's own rule, unchanged: the letterbox pads with the normalization of black."""
  image = np.random.default_rng(7).integers(0, 256, (30, 100, 3), dtype=np.uint8)
  out, hw = preprocess.network_input(image, 64, preprocess.DEFAULT)
  boxed, _ = preprocess.letterbox_image(image, 64)
  np.testing.assert_array_equal(out, preprocess.normalize_image(boxed))
  assert hw == preprocess.letterbox_shape(30, 100, 64)


def test_new_settings_are_validated():
  for bad, match in [({"interpolation": "cubic"}, "interpolation"), ({"min_size": 0}, "min_size"),
                     ({"max_size": 1.5}, "max_size"), ({"size_divisible": -32}, "size_divisible")]:
    with pytest.raises(ValueError, match=match):
      preprocess.settings(bad)
  with pytest.raises(ValueError, match="float pixels"):
    preprocess.resize_to_input(np.zeros((4, 4, 3), np.uint8), 8, preprocess.settings(RCNN))
