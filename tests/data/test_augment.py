"""Augmentation oracle: draw boxes as filled rectangles, augment, and check that every kept box is
the tight box of its rectangle's transformed pixels (exact for flips and CutMix, within one pixel
where bilinear resampling blurs the edges)."""

import colorsys

import chex
import numpy as np
import pytest

from jaxdet.data import augment


def _palette(n, offset=0.0):
  return (np.array([colorsys.hsv_to_rgb((offset + k / n) % 1, 1.0, 1.0) for k in range(n)])
          * 255).astype(np.uint8)


def _rect_example(rng, h, w, *, n=6, first_class=0, palette=None):
  """Non-overlapping filled rectangles on black; class k is drawn in palette[k]."""
  image = np.zeros((h, w, 3), np.uint8)
  boxes, classes = [], []
  cols = 3
  cell_w, cell_h = w // cols, h // ((n + cols - 1) // cols)
  for j in range(n):
    cy, cx = divmod(j, cols)
    bw = int(rng.integers(max(cell_w // 3, 4), cell_w - 2))
    bh = int(rng.integers(max(cell_h // 3, 4), cell_h - 2))
    x0 = cx * cell_w + int(rng.integers(1, cell_w - bw))
    y0 = cy * cell_h + int(rng.integers(1, cell_h - bh))
    k = first_class + j
    image[y0:y0 + bh, x0:x0 + bw] = palette[k]
    boxes.append([x0, y0, x0 + bw, y0 + bh])
    classes.append(k)
  return {"image": image, "boxes": np.array(boxes, np.float32), "classes": np.array(classes, np.int32),
          "image_id": np.int64(0), "orig_size": np.array([h, w], np.int32)}


def _pixel_boxes(image, palette):
  """Tight box of each palette colour's pixels, or None.

  Resampled edges are blends ``alpha * colour`` with the black background, so a pixel belongs to
  the colour it is most parallel to (cosine) when its coverage ``alpha`` exceeds one half.
  """
  p = image.reshape(-1, 3).astype(np.float64)
  pal = palette.astype(np.float64)
  dots = p @ pal.T
  cos = dots / (np.linalg.norm(p, axis=1, keepdims=True) + 1e-9) / np.linalg.norm(pal, axis=1)
  k_best = cos.argmax(1)
  alpha = dots[np.arange(len(p)), k_best] / (pal[k_best] ** 2).sum(1)
  owner = np.where(alpha > 0.5, k_best, -1).reshape(image.shape[:2])
  out = {}
  for k in range(len(palette)):
    ys, xs = np.nonzero(owner == k)
    out[k] = None if len(xs) == 0 else (np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]),
                                        len(xs))
  return out


def _check(out, palette, *, atol):
  chex.assert_type(out["image"], np.uint8)
  chex.assert_rank(out["boxes"], 2)
  assert len(out["boxes"]) == len(out["classes"])
  pix = _pixel_boxes(out["image"], palette)
  assert len(set(out["classes"].tolist())) == len(out["classes"])
  for box, k in zip(out["boxes"], out["classes"]):
    assert pix[int(k)] is not None, f"box of class {k} kept but no pixels visible"
    np.testing.assert_allclose(box, pix[int(k)][0], atol=atol, err_msg=f"class {k}")
  return pix


NO_COLOUR = dict(photometric=0.0, hflip=0.0)


def test_hflip_exact():
  pal = _palette(6)
  ex = _rect_example(np.random.default_rng(0), 60, 90, palette=pal)
  _check(augment.hflip(ex), pal, atol=0)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("resize", ["letterbox", "plain"])
def test_scale_jitter_crop_pad_moves_boxes_with_pixels(seed, resize):
  rng = np.random.default_rng(seed)
  pal = _palette(6)
  ex = _rect_example(rng, int(rng.integers(60, 200)), int(rng.integers(60, 200)), palette=pal)
  cfg = augment.AugmentConfig(scale_range=(0.5, 2.0), resize=resize, hflip=0.5, photometric=0.0)
  out = augment.single(rng, ex, 128, cfg)
  chex.assert_shape(out["image"], (128, 128, 3))
  _check(out, pal, atol=1.0)


def test_scale_jitter_drops_mostly_hidden_boxes():
  # A 100x100 image with one box half outside a crop: zoom x2 around the top-left.
  pal = _palette(2)
  image = np.zeros((100, 100, 3), np.uint8)
  image[10:30, 10:30] = pal[0]  # stays visible
  image[40:60, 55:95] = pal[1]  # only a sliver (5 of 40 px width) stays visible
  ex = {"image": image, "boxes": np.array([[10, 10, 30, 30], [55, 40, 95, 60]], np.float32),
        "classes": np.array([0, 1], np.int32)}
  canvas = np.zeros((100, 100, 3), np.uint8)
  boxes, keep = augment.place(canvas, image, ex["boxes"], 2.0, 2.0, 0, 0, (0, 0, 100, 100),
                              min_visible=0.3, min_size=2)
  np.testing.assert_array_equal(keep, [True, False])
  np.testing.assert_allclose(boxes, [[20, 20, 60, 60]])


@pytest.mark.parametrize("seed", range(4))
def test_mosaic_moves_boxes_with_pixels(seed):
  rng = np.random.default_rng(seed)
  pal = _palette(24)
  examples = [_rect_example(rng, int(rng.integers(80, 200)), int(rng.integers(80, 200)), n=6,
                            first_class=6 * i, palette=pal) for i in range(4)]
  out = augment.mosaic(rng, examples, 160, augment.AugmentConfig(**NO_COLOUR))
  chex.assert_shape(out["image"], (160, 160, 3))
  _check(out, pal, atol=1.0)
  assert len(out["boxes"]) > 0


@pytest.mark.parametrize("seed", range(6))
def test_cutmix_exact(seed):
  rng = np.random.default_rng(seed)
  pal = _palette(12)
  a = _rect_example(rng, 96, 96, n=6, palette=pal)
  b = _rect_example(rng, 96, 96, n=6, first_class=6, palette=pal)
  cfg = augment.AugmentConfig(cutmix_area=(0.2, 0.6), **NO_COLOUR)
  out = augment.cutmix(rng, a, b, cfg)
  _check(out, pal, atol=0)


def test_mixup_keeps_both_box_sets():
  rng = np.random.default_rng(0)
  pal = _palette(12)
  a = _rect_example(rng, 64, 64, palette=pal)
  b = _rect_example(rng, 64, 64, first_class=6, palette=pal)
  out = augment.mixup(rng, a, b, augment.AugmentConfig())
  np.testing.assert_array_equal(out["boxes"], np.concatenate([a["boxes"], b["boxes"]]))
  np.testing.assert_array_equal(out["classes"], np.arange(12))
  lam_image = out["image"].astype(np.float64)
  # The blend is a convex combination of the two images pixel by pixel.
  lo = np.minimum(a["image"], b["image"]).astype(np.float64) - 0.5
  hi = np.maximum(a["image"], b["image"]).astype(np.float64) + 0.5
  assert np.all((lam_image >= lo) & (lam_image <= hi))


def test_photometric_identity_and_range():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
  none = augment.AugmentConfig(brightness=0, contrast=0, saturation=0, hue=0)
  np.testing.assert_array_equal(augment.photometric(rng, image, none), image)
  # Brightness only: a per-pixel scale, compared with a NumPy reference.
  cfg = augment.AugmentConfig(brightness=0.3, contrast=0, saturation=0, hue=0)
  out = augment.photometric(np.random.default_rng(5), image, cfg)
  factor = 1 + np.random.default_rng(5).uniform(-0.3, 0.3)
  ref = np.clip(image * factor, 0, 255)
  assert np.abs(out.astype(np.float64) - ref).max() <= 1.0


def test_augment_deterministic_given_seed():
  pal = _palette(6)
  exs = [_rect_example(np.random.default_rng(i), 80, 120, palette=pal) for i in range(5)]
  load = lambda i: exs[i]
  cfg = augment.FULL_AUGMENT
  runs = [augment.augment(np.random.default_rng([7, i]), load, i % 5, 96, cfg, 5)
          for i in range(10) for _ in range(2)]
  for x, y in zip(runs[::2], runs[1::2]):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["boxes"], y["boxes"])
  assert not np.array_equal(runs[0]["image"], runs[2]["image"])


def test_make_config_validation():
  assert augment.make_config(None) == augment.AugmentConfig()
  assert augment.make_config({"hflip": 0.0}).hflip == 0.0
  assert augment.make_config("none") == augment.NO_AUGMENT
  with pytest.raises(ValueError, match="unknown augment options"):
    augment.make_config({"flip": 0.5})
  with pytest.raises(ValueError, match="resize"):
    augment.make_config({"resize": "stretch"})
