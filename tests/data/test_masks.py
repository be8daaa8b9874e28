"""Masks move with their images: nearest neighbour, padding 255, through every geometric op."""

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from jaxdet.data import augment
from jaxdet.data import masks
from jaxdet.data import preprocess

# Class k is drawn in colour PALETTE[k]; the padding (fill 0) is black, which no class uses.
PALETTE = np.array([[0, 160, 0], [255, 0, 0], [0, 0, 255], [255, 255, 0]], np.int64)


def _example(seed):
  """A random-size image of rectangles whose colour encodes their class, and its mask."""
  rng = np.random.default_rng(seed)
  h, w = (int(v) for v in rng.integers(24, 80, 2))
  mask = np.zeros((h, w), np.uint8)
  for _ in range(4):  # later rectangles over earlier ones, as the shapes renderer draws
    x0, y0 = int(rng.integers(0, w - 6)), int(rng.integers(0, h - 6))
    x1, y1 = x0 + int(rng.integers(6, w - x0 + 1)), y0 + int(rng.integers(6, h - y0 + 1))
    mask[y0:y1, x0:x1] = rng.integers(1, len(PALETTE))
  return {"image": PALETTE[mask].astype(np.uint8), "boxes": np.zeros((0, 4), np.float32),
          "classes": np.zeros((0,), np.int32), "mask": mask}


def _colour_classes(image):
  """Per pixel, the nearest palette colour's class; -1 for the black padding."""
  ref = np.concatenate([PALETTE, [[0, 0, 0]]])
  d = ((image.astype(np.int64)[..., None, :] - ref) ** 2).sum(-1)
  cls = d.argmin(-1)
  return np.where(cls == len(PALETTE), -1, cls)


def _interior(mask):
  """Pixels whose 3x3 neighbourhood has one mask value (bilinear resampling blends edges)."""
  pad = np.pad(mask, 1, mode="edge")
  h, w = mask.shape
  same = np.ones(mask.shape, bool)
  for dy in range(3):
    for dx in range(3):
      same &= pad[dy:dy + h, dx:dx + w] == mask
  return same


def _assert_aligned(out):
  mask, cls = out["mask"], _colour_classes(out["image"])
  assert mask.dtype == np.uint8 and mask.shape == out["image"].shape[:2]
  inner = _interior(mask)
  expected = np.where(mask == masks.IGNORE, -1, mask.astype(np.int64))
  np.testing.assert_array_equal(cls[inner], expected[inner])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), resize=st.sampled_from(["letterbox", "plain"]))
def test_mask_stays_aligned_through_the_augmentations(seed, resize):
  cfg = augment.AugmentConfig(photometric=0.0, resize=resize, scale_range=(0.4, 2.0),
                              mosaic=0.5, cutmix=0.5)
  rng = np.random.default_rng(seed)
  out = augment.augment(rng, lambda i: _example(seed + i), 0, 48, cfg, num_records=5)
  _assert_aligned(out)


@pytest.mark.parametrize("seed", range(3))
def test_single_ops_move_masks(seed):
  ex = _example(seed)
  _assert_aligned(augment.hflip(ex))
  np.testing.assert_array_equal(augment.hflip(ex)["mask"], ex["mask"][:, ::-1])
  rng = np.random.default_rng(seed)
  a = augment.scale_jitter(rng, ex, 40, augment.NO_AUGMENT)
  b = augment.scale_jitter(rng, _example(seed + 7), 40, augment.NO_AUGMENT)
  _assert_aligned(a)
  _assert_aligned(augment.cutmix(rng, a, b, augment.AugmentConfig()))
  mixed = augment.mixup(rng, a, b, augment.AugmentConfig())
  assert mixed["mask"] is a["mask"] or mixed["mask"] is b["mask"]


@pytest.mark.parametrize("rule", ["letterbox", "stretch"])
def test_mask_to_input_follows_the_image_resize(rule):
  ex = _example(11)
  h, w = ex["mask"].shape
  image, _ = preprocess.resize_to_input(ex["image"], 32, rule)
  out = masks.mask_to_input(ex["mask"], 32, rule)
  assert out.shape == (32, 32) and out.dtype == np.uint8
  _assert_aligned({"image": image, "mask": out})
  if rule == "letterbox":  # padding is ignored, the resized part keeps class ids only
    nh, nw = preprocess.letterbox_shape(h, w, 32)
    assert (out[nh:] == 255).all() and (out[:, nw:] == 255).all()
    assert set(np.unique(out[:nh, :nw])) <= set(np.unique(ex["mask"]))
  else:
    assert (out != 255).all()


def test_check_mask_and_palette_mapping():
  assert masks.check_mask(np.zeros((4, 5, 1), np.uint8), (4, 5, 3)).shape == (4, 5)
  with pytest.raises(ValueError, match="mask of size 4x5 .* image is 5x4"):
    masks.check_mask(np.zeros((5, 4)), (4, 5, 3), where="x.png")
  mapped, bad = masks.class_index_mask(np.array([[0, 3, 4, 255, 21]]), num_classes=3)
  np.testing.assert_array_equal(mapped, [[0, 3, 255, 255, 255]])
  assert bad == 2


def test_no_augment_keeps_mask_identical_at_native_size():
  ex = _example(3)
  s = min(ex["mask"].shape)
  ex = dict(ex, image=ex["image"][:s, :s], mask=ex["mask"][:s, :s])
  out = augment.scale_jitter(np.random.default_rng(0), ex, s, augment.NO_AUGMENT)
  np.testing.assert_array_equal(out["mask"], ex["mask"])
  np.testing.assert_array_equal(out["image"], ex["image"])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_mask_stays_aligned_through_the_ssd_zoom_out_and_crop(seed):
  import dataclasses
  cfg = dataclasses.replace(augment.SSD_AUGMENT, photometric=0.0, channel_swap=0.0, fill=0,
                            zoom_out=1.0)  # black fill: the colour test's padding
  def example(i):
    ex = _example(seed + i)
    h, w = ex["mask"].shape
    quarter = np.array([[w / 4, h / 4, 3 * w / 4, 3 * h / 4]], np.float32)  # something to crop
    return dict(ex, boxes=quarter, classes=np.zeros((1,), np.int32))
  out = augment.augment(np.random.default_rng(seed), example, 0, 48, cfg, num_records=5)
  _assert_aligned(out)
