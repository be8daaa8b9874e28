"""Anchors: loop references written here, and torchvision conformance when it is installed."""

import math

import chex
import numpy as np
import pytest

from jaxdet.ops import anchors


def _loop_anchors(image_size, level_sizes, sizes, ratios):
  """Plain-loop torchvision AnchorGenerator in float64 (then rounded as torchvision)."""
  out = []
  for (gh, gw), level_anchor_sizes in zip(level_sizes, sizes):
    sh, sw = image_size[0] // gh, image_size[1] // gw
    for iy in range(gh):
      for ix in range(gw):
        for r in ratios:
          for s in level_anchor_sizes:
            w = s / math.sqrt(r)
            h = s * math.sqrt(r)
            cell = [round(-w / 2), round(-h / 2), round(w / 2), round(h / 2)]
            out.append([ix * sw + cell[0], iy * sh + cell[1], ix * sw + cell[2], iy * sh + cell[3]])
  return np.asarray(out, np.float32)


@pytest.mark.parametrize("image_size", [(64, 64), (96, 80), (100, 70)])
def test_multilevel_anchors_match_loop(image_size):
  levels = anchors.feature_sizes(image_size, (8, 16, 32))
  sizes = ((32, 40, 50), (64, 80, 101), (128, 161, 203))
  got = anchors.multilevel_anchors_xyxy(image_size, levels, sizes=sizes,
                                        aspect_ratios=(0.5, 1.0, 2.0))
  want = _loop_anchors(image_size, levels, sizes, (0.5, 1.0, 2.0))
  chex.assert_shape(got, (sum(h * w for h, w in levels) * 9, 4))
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, want, atol=1.0)  # float64 vs float32 rounding ties may differ
  np.testing.assert_allclose(got[:, 2] - got[:, 0] > 0, True)


def test_retinanet_defaults():
  a = anchors.retinanet_anchors_xyxy(512)
  assert anchors.RETINANET_SIZES[0] == (32, 40, 50)
  assert a.shape == ((64 * 64 + 32 * 32 + 16 * 16 + 8 * 8 + 4 * 4) * 9, 4)
  # First anchor: ratio 0.5 (wide), size 32 at the origin: w = 32 * sqrt(2), h = 32 / sqrt(2).
  np.testing.assert_allclose(a[0], [-23, -11, 23, 11])
  assert anchors.num_anchors_per_location(anchors.RETINANET_SIZES, [(0.5, 1, 2)] * 5) == (9,) * 5


def test_feature_sizes_ceil():
  assert anchors.feature_sizes((100, 64), (8, 32)) == ((13, 8), (4, 2))


def test_grid_points_loop():
  points, strides = anchors.grid_points((40, 24), (8, 16))
  want_p, want_s = [], []
  for s in (8, 16):
    for iy in range(math.ceil(40 / s)):
      for ix in range(math.ceil(24 / s)):
        want_p.append([(ix + 0.5) * s, (iy + 0.5) * s])
        want_s.append(s)
  chex.assert_shape(points, (len(want_p), 2))
  np.testing.assert_array_equal(points, np.asarray(want_p, np.float32))
  np.testing.assert_array_equal(strides, np.asarray(want_s, np.float32))
  assert points.dtype == np.float32 and strides.dtype == np.float32


@pytest.mark.parametrize("bad", [dict(sizes=((0,),)), dict(sizes=((float("nan"),),)),
                                 dict(aspect_ratios=(-1.0,)), dict(sizes=((32,), (64,)))])
def test_bad_arguments_raise(bad):
  kwargs = dict(sizes=((32,),), aspect_ratios=(1.0,))
  kwargs.update(bad)
  with pytest.raises(ValueError):
    anchors.multilevel_anchors_xyxy(64, [(8, 8)], **kwargs)


def _torch_image_list(torch, h, w, level_sizes):
  from torchvision.models.detection.image_list import ImageList
  images = ImageList(torch.zeros(1, 3, h, w), [(h, w)])
  feats = [torch.zeros(1, 1, gh, gw) for gh, gw in level_sizes]
  return images, feats


@pytest.mark.parametrize("image_size", [(512, 512), (320, 416), (300, 500)])
def test_anchor_generator_equals_torchvision(image_size):
  torch = pytest.importorskip("torch")
  pytest.importorskip("torchvision")
  from torchvision.models.detection.anchor_utils import AnchorGenerator
  levels = anchors.feature_sizes(image_size, anchors.RETINANET_STRIDES)
  gen = AnchorGenerator(anchors.RETINANET_SIZES, (anchors.RETINANET_ASPECT_RATIOS,) * 5)
  want = gen(*_torch_image_list(torch, *image_size, levels))[0].numpy()
  got = anchors.retinanet_anchors_xyxy(image_size)
  np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("steps,clip", [(None, True), ([8, 16, 32, 64, 100, 300], False)])
def test_ssd_default_boxes_equal_torchvision(steps, clip):
  torch = pytest.importorskip("torch")
  pytest.importorskip("torchvision")
  from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
  ratios = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
  levels = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
  gen = DefaultBoxGenerator(ratios, steps=steps, clip=clip)
  want = gen(*_torch_image_list(torch, 300, 300, levels))[0].numpy()
  got = anchors.ssd_default_boxes_xyxy(300, levels, aspect_ratios=ratios, steps=steps, clip=clip)
  chex.assert_shape(got, want.shape)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)


def test_ssd_default_boxes_match_loop():
  ratios, levels, size = [[2], [2, 3]], [(3, 3), (2, 2)], 60
  scales = anchors.ssd_scales(2, min_ratio=0.2, max_ratio=0.9)
  assert scales == pytest.approx((0.2, 0.9, 1.0))
  want = []
  for k, (gh, gw) in enumerate(levels):
    s_k = scales[k]
    wh = [(s_k, s_k), (math.sqrt(s_k * scales[k + 1]),) * 2]
    for r in ratios[k]:
      wh += [(s_k * math.sqrt(r), s_k / math.sqrt(r)), (s_k / math.sqrt(r), s_k * math.sqrt(r))]
    for iy in range(gh):
      for ix in range(gw):
        cx, cy = (ix + 0.5) / gw, (iy + 0.5) / gh
        for w, h in wh:
          w, h = min(w, 1.0), min(h, 1.0)
          want.append([(cx - w / 2) * size, (cy - h / 2) * size, (cx + w / 2) * size,
                       (cy + h / 2) * size])
  got = anchors.ssd_default_boxes_xyxy(size, levels, aspect_ratios=ratios, min_ratio=0.2,
                                       max_ratio=0.9)
  np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-4)
