"""RoIAlign: plain-loop bilinear reference, every static path, torchvision, gradients."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet import testing
from jaxdet.ops.roi_align import roi_align


def _bilinear(fmap, y, x):
  """torchvision's bilinear_interpolate on one [H, W, C] map (plain scalar logic)."""
  h, w, c = fmap.shape
  if y < -1.0 or y > h or x < -1.0 or x > w:
    return np.zeros(c)
  y, x = max(y, 0.0), max(x, 0.0)
  y_low, x_low = int(y), int(x)
  if y_low >= h - 1:
    y_low = y_high = h - 1
    y = float(y_low)
  else:
    y_high = y_low + 1
  if x_low >= w - 1:
    x_low = x_high = w - 1
    x = float(x_low)
  else:
    x_high = x_low + 1
  ly, lx = y - y_low, x - x_low
  hy, hx = 1 - ly, 1 - lx
  return (hy * hx * fmap[y_low, x_low] + hy * lx * fmap[y_low, x_high]
          + ly * hx * fmap[y_high, x_low] + ly * lx * fmap[y_high, x_high])


def _loop_roi_align(features, boxes, out_size, scale, sampling_ratio, aligned):
  b_, k_, (oh, ow) = boxes.shape[0], boxes.shape[1], out_size
  out = np.zeros((b_, k_, oh, ow, features.shape[-1]))
  # Box geometry in float32 like torchvision's kernel: in float64 a size of 14 + 1e-7 would
  # take ceil() to a different sample count.
  f32 = np.float32
  offset = f32(0.5 if aligned else 0.0)
  for b in range(b_):
    for k in range(k_):
      x1, y1, x2, y2 = (f32(v) * f32(scale) - offset for v in boxes[b, k])
      rw, rh = x2 - x1, y2 - y1
      if not aligned:
        rw, rh = max(rw, f32(1)), max(rh, f32(1))
      bh, bw = rh / f32(oh), rw / f32(ow)
      gh = sampling_ratio if sampling_ratio > 0 else math.ceil(rh / oh)
      gw = sampling_ratio if sampling_ratio > 0 else math.ceil(rw / ow)
      count = max(gh * gw, 1)
      for ph in range(oh):
        for pw in range(ow):
          acc = np.zeros(features.shape[-1])
          for iy in range(gh):
            y = y1 + f32(ph) * bh + f32(iy + 0.5) * bh / f32(gh)
            for ix in range(gw):
              x = x1 + f32(pw) * bw + f32(ix + 0.5) * bw / f32(gw)
              acc += _bilinear(features[b], float(y), float(x))
          out[b, k, ph, pw] = acc / count
  return out


def _boxes(rng, b, k, size, min_wh, max_wh, margin=0.0):
  """`[b, k, 4]` boxes with corners up to `margin` outside a `size` image."""
  return testing.random_boxes_xyxy(rng, (b, k), xy_range=(-margin, size + margin - min_wh),
                                   wh_range=(min_wh, max_wh))


CASES = [
    # (sampling_ratio, aligned, box size range in input pixels, margin outside the image)
    (2, True, (4, 40), 8),
    (1, False, (0, 30), 0),
    (5, True, (10, 120), 20),   # 10 unmerged taps > limit: dense path with fixed samples
    (-1, True, (0, 12), 4),     # adaptive, small: merged taps
    (0, False, (20, 70), 10),   # adaptive, medium: more merged taps
    (-1, True, (60, 300), 120),  # adaptive, large and far outside: dense path
]


@pytest.mark.parametrize("sampling_ratio,aligned,wh,margin", CASES)
def test_matches_loop_reference(sampling_ratio, aligned, wh, margin):
  rng = np.random.default_rng(sampling_ratio + 10 * aligned + wh[1])
  features = rng.standard_normal((2, 12, 10, 3)).astype(np.float32)
  boxes = _boxes(rng, 2, 5, 48, *wh, margin=margin)
  got = roi_align(features, boxes, output_size=(3, 4), spatial_scale=0.25,
                  sampling_ratio=sampling_ratio, aligned=aligned)
  chex.assert_shape(got, (2, 5, 3, 4, 3))
  chex.assert_type(got, jnp.float32)
  want = _loop_roi_align(features, boxes, (3, 4), 0.25, sampling_ratio, aligned)
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def _side_boxes(rng, sides):
  xy = rng.uniform(-4, 14, (len(sides), 2))
  aspect = rng.uniform(0.6, 1.0, (len(sides), 1))
  wh = np.asarray(sides)[:, None] * np.concatenate([aspect, 1 / aspect], 1) ** 0.5
  return np.concatenate([xy, xy + wh], 1)[None].astype(np.float32)


def test_every_adaptive_path_is_exact():
  """The short and long sample enumerations with 1 to 6x6 tap blocks, up to 8 "big" RoIs (grid
  > 27) on the per-RoI dense path, and more on the all-dense path; same shapes, one compile."""
  rng = np.random.default_rng(0)
  features = rng.standard_normal((1, 16, 16, 2)).astype(np.float32)
  small = [0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
  cases = {"short": small + [8.0, 1.5], "long": small[:4] + [9.0, 14.0, 15.9, 22.0, 30.0, 40.0],
           "2 big": small + [56.0, 70.0], "10 big": [56.0 + 2 * i for i in range(10)]}
  for name, sides in cases.items():
    boxes = _side_boxes(rng, sides)
    got = roi_align(features, boxes, output_size=2, sampling_ratio=-1, aligned=False)
    want = _loop_roi_align(features, boxes, (2, 2), 1.0, -1, False)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4, err_msg=name)


def test_degenerate_and_non_finite_boxes():
  features = np.ones((1, 8, 8, 2), np.float32)
  boxes = np.array([[[2, 2, 2, 2], [3, 3, 1, 1], [np.nan, 0, 4, 4], [0, 0, np.inf, 4],
                     [100, 100, 120, 120]]], np.float32)
  for aligned, ratio in [(True, -1), (False, 2)]:
    got = np.asarray(roi_align(features, boxes, output_size=2, sampling_ratio=ratio,
                               aligned=aligned))
    assert np.isfinite(got).all()
    want = _loop_roi_align(features, boxes[:, :2], (2, 2), 1.0, ratio, aligned)
    np.testing.assert_allclose(got[:, :2], want, atol=1e-5)
    assert (got[:, 2:4] == 0).all() and (got[:, 4] == 0).all()


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
    roi_align(np.zeros((8, 8, 3)), np.zeros((1, 2, 4)), output_size=2)
  with pytest.raises(ValueError, match=r"\[B, K, 4\]"):
    roi_align(np.zeros((2, 8, 8, 3)), np.zeros((1, 2, 4)), output_size=2)
  with pytest.raises(ValueError, match="float"):
    roi_align(np.zeros((1, 8, 8, 3), np.int32), np.zeros((1, 2, 4)), output_size=2)
  with pytest.raises(ValueError, match="output_size"):
    roi_align(np.zeros((1, 8, 8, 3)), np.zeros((1, 2, 4)), output_size=0)


# huge_box: the per-RoI dense path (adaptive grid > 27); a fixed ratio never needs it.
@pytest.mark.parametrize("ratio,huge_box", [(2, False), (-1, False), (-1, True)])
def test_gradient_flows_to_features(ratio, huge_box):
  rng = np.random.default_rng(1)
  features = jnp.asarray(rng.standard_normal((1, 6, 6, 2)).astype(np.float32))
  third = [-40.0, -30.0, 50.0, 45.0] if huge_box else [2.0, 2.0, 3.0, 3.5]
  boxes = np.array([[[0.5, 1.0, 4.0, 5.5], [-1.0, 2.0, 7.5, 3.0], third]], np.float32)
  cot = rng.standard_normal((1, 3, 2, 2, 2))
  fn = lambda f: jnp.sum(cot * roi_align(f, boxes, output_size=2, sampling_ratio=ratio,
                                         aligned=True))
  grad = np.asarray(jax.jit(jax.grad(fn))(features))
  assert np.abs(grad).sum() > 0
  # RoIAlign is linear in the features: <grad, d> = <cot, reference(d)> for any direction d.
  for _ in range(2):
    d = rng.standard_normal((1, 6, 6, 2))
    want = np.sum(cot * _loop_roi_align(d, boxes, (2, 2), 1.0, ratio, True))
    np.testing.assert_allclose(np.sum(grad * d), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sampling_ratio,aligned", [(2, True), (-1, True), (-1, False), (3, False)])
def test_equals_torchvision(sampling_ratio, aligned):
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  rng = np.random.default_rng(4)
  features = rng.standard_normal((2, 32, 24, 8)).astype(np.float32)
  boxes = _boxes(rng, 2, 40, 256, 2, 260, margin=30)
  got = roi_align(features, boxes, output_size=(7, 5), spatial_scale=1 / 8,
                  sampling_ratio=sampling_ratio, aligned=aligned)
  rois = np.concatenate([np.repeat(np.arange(2.0), 40)[:, None], boxes.reshape(-1, 4)], 1)
  want = torchvision.ops.roi_align(torch.from_numpy(features.transpose(0, 3, 1, 2).copy()),
                                   torch.from_numpy(rois.astype(np.float32)), (7, 5),
                                   spatial_scale=1 / 8, sampling_ratio=sampling_ratio,
                                   aligned=aligned)
  want = want.numpy().transpose(0, 2, 3, 1).reshape(2, 40, 7, 5, 8)
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_vmap_equals_per_image_calls():
  rng = np.random.default_rng(5)
  features = rng.standard_normal((3, 1, 12, 10, 4)).astype(np.float32)
  lo, hi = rng.uniform(0, 30, (3, 1, 5, 2)), rng.uniform(30, 48, (3, 1, 5, 2))
  boxes = np.concatenate([lo, hi], -1).astype(np.float32)
  boxes[2, 0, 0] = [-300, -300, 400, 400]  # only this element needs the dense path
  fn = lambda f, b: roi_align(f, b, output_size=3, spatial_scale=0.25, sampling_ratio=-1)
  mapped = jax.vmap(fn)(features, boxes)
  np.testing.assert_allclose(mapped, np.stack([fn(features[i], boxes[i]) for i in range(3)]),
                             atol=1e-6)
