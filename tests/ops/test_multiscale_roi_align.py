"""Multi-scale RoIAlign: level mapping and pooling equal to torchvision's MultiScaleRoIAlign."""

from collections import OrderedDict

import chex
import jax
import numpy as np

import testing_torch
from jaxdet import testing
from jaxdet.ops.multiscale_roi_align import multiscale_roi_align, roi_levels

S = 128


def _inputs(seed=0, k=12):
  rng = np.random.default_rng(seed)
  feats = [rng.standard_normal((2, S // s, S // s, 3)).astype(np.float32) for s in (4, 8, 16, 32)]
  boxes = testing.random_boxes_xyxy(rng, (2, k), xy_range=(-10.0, S), wh_range=(2.0, 100.0))
  # Sides up to 600 px so that every level (and both clamps) is hit.
  boxes[:, :4, 2:] = boxes[:, :4, :2] + np.array([[150.0], [300.0], [460.0], [600.0]])
  return feats, boxes


def test_levels_follow_the_fpn_rule():
  boxes = np.array([[0, 0, 10, 10], [0, 0, 112, 112], [0, 0, 224, 224], [0, 0, 448, 448],
                    [0, 0, 2000, 2000], [0, 0, 223.9, 224]], np.float32)
  np.testing.assert_array_equal(roi_levels(boxes, k_min=2, k_max=5), [0, 1, 2, 3, 3, 1])


def test_matches_torchvision(sampling_ratio=2):
  torch, torchvision = testing_torch.torch_modules()
  feats, boxes = _inputs(seed=1)
  assert set(np.asarray(roi_levels(boxes, k_min=2, k_max=5)).ravel()) == {0, 1, 2, 3}
  fn = jax.jit(lambda f, b: multiscale_roi_align(f, b, image_size=S, output_size=7,
                                                 sampling_ratio=sampling_ratio))
  got = np.asarray(fn(feats, boxes))
  chex.assert_shape(got, (2, 12, 7, 7, 3))
  pooler = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2", "3"], 7, sampling_ratio)
  x = OrderedDict((str(i), torch.from_numpy(f.transpose(0, 3, 1, 2)).contiguous())
                  for i, f in enumerate(feats))
  want = pooler(x, [torch.from_numpy(b) for b in boxes], [(S, S), (S, S)])
  np.testing.assert_allclose(got.reshape(24, 7, 7, 3), want.numpy().transpose(0, 2, 3, 1),
                             rtol=1e-5, atol=1e-5)
