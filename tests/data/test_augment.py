"""Augmentation oracle: draw boxes as filled rectangles, augment, and check that every kept box is
the tight box of its rectangle's transformed pixels (exact for flips and CutMix, within one pixel
where bilinear resampling blurs the edges)."""

import colorsys
import dataclasses

import chex
from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from jaxdet.data import augment
from jaxdet.data import augment_ssd


def _palette(n, offset=0.0):
  return (np.array([colorsys.hsv_to_rgb((offset + k / n) % 1, 1.0, 1.0) for k in range(n)])
          * 255).astype(np.uint8)


def _rect_example(rng, h, w, *, n=6, first_class=0, palette=None, margin=1):
  """Non-overlapping filled rectangles on black, at least ``2 * margin`` px apart; class k is
  drawn in palette[k]."""
  image = np.zeros((h, w, 3), np.uint8)
  boxes, classes = [], []
  cols = 3
  cell_w, cell_h = w // cols, h // ((n + cols - 1) // cols)
  for j in range(n):
    cy, cx = divmod(j, cols)
    bw = int(rng.integers(max(cell_w // 3, 4), cell_w - 2 * margin))
    bh = int(rng.integers(max(cell_h // 3, 4), cell_h - 2 * margin))
    x0 = cx * cell_w + int(rng.integers(margin, cell_w - bw - margin + 1))
    y0 = cy * cell_h + int(rng.integers(margin, cell_h - bh - margin + 1))
    k = first_class + j
    image[y0:y0 + bh, x0:x0 + bw] = palette[k]
    boxes.append([x0, y0, x0 + bw, y0 + bh])
    classes.append(k)
  return {"image": image, "boxes": np.array(boxes, np.float32), "classes": np.array(classes, np.int32),
          "image_id": np.int64(0), "orig_size": np.array([h, w], np.int32)}


def _pixel_boxes(image, palette):
  """Tight box of each palette colour's pixels, or None.

  Resampled edges are blends ``alpha * colour`` with the black background, so a pixel belongs to
  the colour it is most parallel to (cosine) when its coverage ``alpha`` exceeds one half. A
  blend of two rectangles' colours (neighbours a strong downscale merges) is parallel to no
  palette colour (cosine < 0.99, while uint8 rounding of a half-covered pixel stays above
  0.999), and belongs to none.
  """
  p = image.reshape(-1, 3).astype(np.float64)
  pal = palette.astype(np.float64)
  dots = p @ pal.T
  cos = dots / (np.linalg.norm(p, axis=1, keepdims=True) + 1e-9) / np.linalg.norm(pal, axis=1)
  k_best = cos.argmax(1)
  alpha = dots[np.arange(len(p)), k_best] / (pal[k_best] ** 2).sum(1)
  parallel = cos[np.arange(len(p)), k_best] > 0.99
  owner = np.where((alpha > 0.5) & parallel, k_best, -1).reshape(image.shape[:2])
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
  assert augment.make_config("ssd") == augment.SSD_AUGMENT
  assert augment.make_config("mosaic").mosaic == 1.0
  cfg = augment.make_config({"fill": [1, 2, 3], "zoom_out_range": [1, 2]})
  assert cfg.fill == (1, 2, 3) and cfg.zoom_out_range == (1, 2)
  with pytest.raises(ValueError, match="unknown augment preset 'sdd'"):
    augment.make_config("sdd")
  with pytest.raises(ValueError, match="unknown augment options"):
    augment.make_config({"flip": 0.5})
  with pytest.raises(ValueError, match="resize"):
    augment.make_config({"resize": "stretch"})


# SSD and mosaic presets: property tests (photometric off and a black fill where pixels are read,
# so that `_pixel_boxes` can tell the rectangles from the background).
SSD_GEOMETRY = dataclasses.replace(augment.SSD_AUGMENT, photometric=0.0, fill=0)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(40, 160), st.integers(40, 160),
       st.sampled_from(["letterbox", "plain"]))
def test_ssd_moves_boxes_with_pixels(seed, h, w, resize):
  rng = np.random.default_rng(seed)
  pal = _palette(6)
  ex = _rect_example(rng, h, w, palette=pal)
  cfg = dataclasses.replace(SSD_GEOMETRY, resize=resize)
  out = augment.single(rng, ex, 64, cfg)
  chex.assert_shape(out["image"], (64, 64, 3))
  _check(out, pal, atol=1.0)
  wh = out["boxes"][:, 2:] - out["boxes"][:, :2]
  assert np.all(wh >= cfg.min_size) and out["boxes"].min(initial=0) >= 0
  assert out["boxes"].max(initial=0) <= 64


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 80), st.integers(1, 80),
       st.sampled_from([(0.0,), (0.5,), (0.9,), augment.SSD_AUGMENT.iou_crop_min_ious]))
def test_iou_crop_window_keeps_boxes_by_centre(seed, h, w, min_ious):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(0, 6))
  x0, y0 = rng.uniform(0, w, n), rng.uniform(0, h, n)
  boxes = np.stack([x0, y0, rng.uniform(x0, w), rng.uniform(y0, h)], 1).astype(np.float32)
  cfg = dataclasses.replace(augment.SSD_AUGMENT, iou_crop_min_ious=min_ious)
  got = augment_ssd.iou_crop_window(rng, boxes, h, w, cfg)
  if got is None:
    return
  (left, top, right, bottom), keep = got
  assert 0 <= left < right <= w and 0 <= top < bottom <= h
  cw, ch = right - left, bottom - top
  assert int(0.3 * w) <= cw and int(0.3 * h) <= ch and 0.5 <= cw / ch <= 2.0
  c = (boxes[:, :2] + boxes[:, 2:]) / 2
  inside = (c[:, 0] > left) & (c[:, 0] < right) & (c[:, 1] > top) & (c[:, 1] < bottom)
  np.testing.assert_array_equal(keep, inside)
  iou = augment_ssd._window_iou(boxes[keep], np.array([[left, top, right, bottom]], np.float32))
  assert iou.max() >= min(min_ious) - 1e-6


def test_ssd_crop_drops_boxes_whose_centre_is_cut_away():
  # Crops of half a side: the two corner boxes' centres are never both inside; the kept one is
  # clipped to the crop, the other dropped even where a part of it stays visible.
  pal = _palette(2)
  image = np.zeros((100, 100, 3), np.uint8)
  boxes = np.array([[2, 2, 40, 40], [60, 60, 98, 98]], np.float32)
  for k, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
    image[y0:y1, x0:x1] = pal[k]
  ex = {"image": image, "boxes": boxes, "classes": np.array([0, 1], np.int32)}
  cfg = dataclasses.replace(SSD_GEOMETRY, zoom_out=0.0, iou_crop_min_ious=(0.0,),
                            iou_crop_scale=(0.5, 0.5))
  for seed in range(8):
    out = augment_ssd.zoom_out_and_crop(np.random.default_rng(seed), ex, cfg)
    chex.assert_shape(out["image"], (50, 50, 3))
    assert len(out["classes"]) == 1
    _check(out, pal, atol=0)


def test_ssd_zoom_out_fills_with_the_mean_colour():
  image = np.full((20, 30, 3), 255, np.uint8)
  ex = {"image": image, "boxes": np.array([[0, 0, 30, 20]], np.float32),
        "classes": np.array([0], np.int32)}
  cfg = dataclasses.replace(augment.SSD_AUGMENT, zoom_out=1.0, zoom_out_range=(3.0, 3.0),
                            iou_crop=0.0)
  out = augment_ssd.zoom_out_and_crop(np.random.default_rng(0), ex, cfg)
  chex.assert_shape(out["image"], (60, 90, 3))
  x0, y0, x1, y1 = out["boxes"][0].astype(int)
  assert (x1 - x0, y1 - y0) == (30, 20)
  inside = np.zeros((60, 90), bool)
  inside[y0:y1, x0:x1] = True
  assert np.all(out["image"][inside] == 255)
  assert np.all(out["image"][~inside] == np.array([123, 117, 104], np.uint8))


def test_photometric_channel_swap_and_per_op_coins():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
  swap = augment.AugmentConfig(brightness=0, contrast=0, saturation=0, hue=0, channel_swap=1.0)
  out = augment.photometric(np.random.default_rng(1), image, swap)
  perm = [int(np.argmin([np.abs(out[..., i].astype(int) - image[..., j]).sum() for j in range(3)]))
          for i in range(3)]
  assert sorted(perm) == [0, 1, 2]
  np.testing.assert_array_equal(out, image[..., perm])
  # Every op's coin lost: the identity, whatever the ranges.
  off = dataclasses.replace(augment.SSD_AUGMENT, photometric_op_prob=1e-12, channel_swap=0.0)
  np.testing.assert_array_equal(augment.photometric(rng, image, off), image)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(80, 160))
def test_mosaic_preset_moves_boxes_with_pixels(seed, size):
  rng = np.random.default_rng(seed)
  pal = _palette(24)
  # Wide gaps: neighbours of adjacent hues, merged by a strong downscale, would blend into a
  # third palette colour.
  exs = [_rect_example(rng, int(rng.integers(60, 200)), int(rng.integers(60, 200)), n=6,
                       first_class=6 * i, palette=pal, margin=6) for i in range(4)]
  cfg = dataclasses.replace(augment.MOSAIC_AUGMENT, photometric=0.0)
  # The main example, then the partners in call order (whatever index is drawn): every box
  # keeps a distinct colour.
  order = iter(exs)
  out = augment.augment(rng, lambda i: next(order), 0, size, cfg, 4)
  chex.assert_shape(out["image"], (size, size, 3))
  pix = _check(out, pal, atol=1.0)
  # Tiny remnants are dropped: a kept box is at least min_size on each side.
  wh = out["boxes"][:, 2:] - out["boxes"][:, :2]
  assert np.all(wh >= cfg.min_size)
  assert len(out["boxes"]) <= sum(p is not None for p in pix.values())


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(1, 6), st.integers(1, 16),
       st.sampled_from(["ssd", "mosaic"]))
def test_presets_on_tiny_images(seed, h, w, size, preset):
  rng = np.random.default_rng(seed)
  x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
  boxes = np.array([[0, 0, w, h], [x0, y0, min(x0 + 0.5, w), min(y0 + 0.5, h)]], np.float32)
  ex = {"image": rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "boxes": boxes,
        "classes": np.array([0, 1], np.int32), "image_id": np.int64(0),
        "orig_size": np.array([h, w], np.int32)}
  cfg = augment.make_config(preset)
  out = augment.augment(rng, lambda i: ex, 0, size, cfg, 1)
  chex.assert_shape(out["image"], (size, size, 3))
  chex.assert_type(out["image"], np.uint8)
  assert len(out["boxes"]) == len(out["classes"])
  b = out["boxes"]
  assert np.all(np.isfinite(b)) and b.min(initial=0) >= 0 and b.max(initial=0) <= size
  assert np.all(b[:, 2:] - b[:, :2] >= cfg.min_size)


@pytest.mark.parametrize("preset", ["ssd", "mosaic"])
def test_presets_deterministic_given_seed(preset):
  pal = _palette(6)
  exs = [_rect_example(np.random.default_rng(i), 80, 120, palette=pal) for i in range(5)]
  cfg = augment.make_config(preset)
  runs = [augment.augment(np.random.default_rng([7, i]), lambda j: exs[j], i % 5, 64, cfg, 5)
          for i in range(8) for _ in range(2)]
  for x, y in zip(runs[::2], runs[1::2]):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["boxes"], y["boxes"])
    np.testing.assert_array_equal(x["classes"], y["classes"])
  assert not np.array_equal(runs[0]["image"], runs[2]["image"])
