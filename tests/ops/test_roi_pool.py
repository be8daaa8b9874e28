"""RoIPool: plain-loop reference (torchvision's kernel logic), torchvision itself, jit/vmap."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import testing_torch
from jaxdet import testing
from jaxdet.ops.roi_pool import roi_pool


def _c_round(v):
  return math.floor(abs(v) + 0.5) * (1 if v >= 0 else -1)


def _loop_roi_pool(features, boxes, out_size, scale):
  """torchvision's roi_pool CPU kernel as scalar loops (float32 box arithmetic)."""
  f32 = np.float32
  b_, k_, (oh, ow) = boxes.shape[0], boxes.shape[1], out_size
  _, h, w, c = features.shape
  out = np.zeros((b_, k_, oh, ow, c), np.float32)
  for b in range(b_):
    for k in range(k_):
      x1, y1, x2, y2 = (_c_round(f32(v) * f32(scale)) for v in boxes[b, k])
      rh, rw = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
      bh, bw = f32(rh) / f32(oh), f32(rw) / f32(ow)
      for ph in range(oh):
        hs = min(max(math.floor(f32(ph) * bh) + y1, 0), h)
        he = min(max(math.ceil(f32(ph + 1) * bh) + y1, 0), h)
        for pw in range(ow):
          ws = min(max(math.floor(f32(pw) * bw) + x1, 0), w)
          we = min(max(math.ceil(f32(pw + 1) * bw) + x1, 0), w)
          if he > hs and we > ws:
            out[b, k, ph, pw] = features[b, hs:he, ws:we].reshape(-1, c).max(0)
  return out


def _inputs(seed=0, b=2, k=7, h=13, w=11, c=3, scale=0.5):
  rng = np.random.default_rng(seed)
  feats = rng.standard_normal((b, h, w, c)).astype(np.float32)
  # Boxes partly outside the map, tiny, inverted and exactly on .5 cells.
  boxes = testing.random_boxes_xyxy(rng, (b, k), xy_range=(-6.0, 2 * w), wh_range=(0.0, 2 * w))
  boxes[0, 0] = [1.0, 1.0, 1.0, 1.0]
  boxes[0, 1] = [9.0, 9.0, 3.0, 3.0]
  boxes[1, 0] = [3.0, 5.0, 7.0, 9.0]  # scale 0.5: x1 1.5 -> 2, y1 2.5 -> 3 (half away from 0)
  return feats, boxes, scale


@pytest.mark.parametrize("out_size", [(2, 2), (3, 4)])
def test_matches_plain_loop(out_size):
  feats, boxes, scale = _inputs()
  got = roi_pool(feats, boxes, output_size=out_size, spatial_scale=scale)
  chex.assert_shape(got, boxes.shape[:2] + out_size + (3,))
  np.testing.assert_array_equal(np.asarray(got), _loop_roi_pool(feats, boxes, out_size, scale))


def test_matches_torchvision():
  torch, torchvision = testing_torch.torch_modules()
  feats, boxes, scale = _inputs(seed=3, k=20, h=24, w=19, c=4, scale=0.25)
  got = roi_pool(feats, boxes, output_size=7, spatial_scale=scale)
  rois = np.concatenate([np.repeat(np.arange(2.0), 20)[:, None], boxes.reshape(-1, 4)], 1)
  want = torchvision.ops.roi_pool(torch.from_numpy(feats.transpose(0, 3, 1, 2)).contiguous(),
                                  torch.from_numpy(rois.astype(np.float32)), (7, 7), scale)
  np.testing.assert_array_equal(np.asarray(got).reshape(40, 7, 7, 4),
                                want.numpy().transpose(0, 2, 3, 1))


def test_jit_vmap_grad_and_non_finite_boxes():
  feats, boxes, scale = _inputs()
  boxes[1, 2] = [np.nan, 0.0, 4.0, 4.0]
  fn = lambda f, bx: roi_pool(f, bx, output_size=3, spatial_scale=scale)
  eager = fn(feats, boxes)
  np.testing.assert_array_equal(jax.jit(fn)(feats, boxes), eager)
  vmapped = jax.vmap(lambda f, bx: fn(f[None], bx[None])[0])(feats, boxes)
  np.testing.assert_array_equal(vmapped, eager)
  assert np.all(np.asarray(eager)[1, 2] == 0)
  grad = jax.grad(lambda f: jnp.sum(fn(f, boxes)))(jnp.asarray(feats))
  chex.assert_tree_all_finite(grad)
  assert float(jnp.sum(grad)) > 0


def test_bad_shapes_name_the_argument():
  feats, boxes, _ = _inputs()
  with pytest.raises(ValueError, match="boxes_xyxy must be"):
    roi_pool(feats, boxes[0], output_size=2)
  with pytest.raises(ValueError, match="features must be"):
    roi_pool(feats[0], boxes, output_size=2)
