"""Box coders: NumPy references, round trips, torchvision conformance."""

import functools
import math

import chex
from hypothesis import given, settings, strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet import testing
from jaxdet.ops import coders


_random_boxes = functools.partial(testing.random_boxes_xyxy, wh_range=(1.0, 100.0))


def _np_encode(a, b, w):
  out = []
  for (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) in zip(a.tolist(), b.tolist()):
    aw, ah, bw, bh = ax2 - ax1, ay2 - ay1, bx2 - bx1, by2 - by1
    acx, acy, bcx, bcy = ax1 + aw / 2, ay1 + ah / 2, bx1 + bw / 2, by1 + bh / 2
    out.append([w[0] * (bcx - acx) / aw, w[1] * (bcy - acy) / ah,
                w[2] * math.log(bw / aw), w[3] * math.log(bh / ah)])
  return np.asarray(out)


WEIGHTS = [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]


@pytest.mark.parametrize("weights", WEIGHTS)
def test_encode_matches_numpy_and_round_trips(weights):
  rng = np.random.default_rng(0)
  a, b = _random_boxes(rng, 200), _random_boxes(rng, 200)
  deltas = coders.encode(a, b, weights=weights)
  chex.assert_shape(deltas, (200, 4))
  chex.assert_type(deltas, jnp.float32)
  np.testing.assert_allclose(deltas, _np_encode(a, b, weights), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(coders.decode(a, deltas, weights=weights), b, atol=1e-4)


def test_box_coder_object_and_broadcasting():
  rng = np.random.default_rng(1)
  anchors = _random_boxes(rng, 50)
  boxes = np.stack([_random_boxes(rng, 50) for _ in range(3)])  # [3, 50, 4] vs [50, 4]
  coder = coders.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
  deltas = jax.jit(coder.encode)(anchors, boxes)
  chex.assert_shape(deltas, (3, 50, 4))
  np.testing.assert_allclose(jax.jit(coder.decode)(anchors, deltas), boxes, atol=1e-4)


def test_decode_clamps_large_sizes():
  anchors = np.array([[0.0, 0.0, 16.0, 16.0]], np.float32)
  deltas = np.array([[0.0, 0.0, 100.0, -3.0]], np.float32)
  box = np.asarray(coders.decode(anchors, deltas))[0]
  np.testing.assert_allclose(box[2] - box[0], 1000.0, rtol=1e-5)  # exp(log(1000/16)) * 16
  np.testing.assert_allclose(box[3] - box[1], 16 * math.exp(-3.0), rtol=1e-5)  # no lower clamp


def test_encode_degenerate_boxes_finite():
  anchors = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
  boxes = np.array([[0, 0, 0, 0], [5, 5, 5, 9]], np.float32)  # zero padding, zero width
  deltas = coders.encode(anchors, boxes)
  assert np.isfinite(np.asarray(deltas)).all()
  grads = jax.grad(lambda a: coders.encode(a, boxes).sum())(jnp.asarray(anchors))
  assert np.isfinite(np.asarray(grads)).all()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-500, 500), min_size=2, max_size=2),
       st.lists(st.floats(0.5, 400), min_size=2, max_size=2),
       st.lists(st.floats(-1.5, 1.5), min_size=2, max_size=2),
       st.lists(st.floats(-3.0, 3.0), min_size=2, max_size=2))
def test_decode_encode_round_trip_property(xy, wh, dxy, dwh):
  anchors = np.array([[xy[0], xy[1], xy[0] + wh[0], xy[1] + wh[1]]], np.float32)
  deltas = np.array([dxy + dwh], np.float32)
  boxes = np.asarray(coders.decode(anchors, deltas))
  # float32: decode rounds each coordinate by a few ulps of the largest coordinate M, and encode
  # divides the differences of coordinates by the anchor's sides (dx, dy) and, inside the log, by
  # the decoded box's sides (dw, dh). A box centred at 128 with a side of 0.07 is off by ~1e-4.
  magnitude = np.abs(np.concatenate([anchors, boxes], -1)).max(-1, keepdims=True)
  a_wh = anchors[:, 2:] - anchors[:, :2]
  b_wh = boxes[:, 2:] - boxes[:, :2]
  atol = testing.f32_atol(magnitude / np.concatenate([a_wh, b_wh], -1)) + testing.f32_atol(1.0)
  err = np.abs(np.asarray(coders.encode(anchors, boxes), np.float64) - deltas)
  assert (err <= atol).all(), (err, atol)


def test_ltrb_matches_numpy_and_round_trips():
  rng = np.random.default_rng(2)
  points = rng.uniform(0, 100, (64, 2)).astype(np.float32)
  strides = rng.choice([8.0, 16.0, 32.0], 64).astype(np.float32)
  boxes = _random_boxes(rng, 64)
  d = coders.encode_ltrb(points, boxes, strides=strides)
  want = np.stack([points[:, 0] - boxes[:, 0], points[:, 1] - boxes[:, 1],
                   boxes[:, 2] - points[:, 0], boxes[:, 3] - points[:, 1]], 1) / strides[:, None]
  np.testing.assert_allclose(d, want, rtol=1e-6)
  np.testing.assert_allclose(coders.decode_ltrb(points, d, strides=strides), boxes, atol=1e-4)
  clamped = coders.encode_ltrb(points, boxes, strides=strides, max_distance=15.99)
  np.testing.assert_allclose(clamped, np.clip(want, 0, 15.99), rtol=1e-6)
  # Without strides the distances are in pixels; vmap over a batch of boxes.
  batched = jax.vmap(lambda b: coders.encode_ltrb(points, b))(np.stack([boxes, boxes]))
  chex.assert_shape(batched, (2, 64, 4))
  np.testing.assert_allclose(batched[1], want * strides[:, None], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("weights", WEIGHTS)
def test_box_coder_equals_torchvision(weights):
  torch = pytest.importorskip("torch")
  pytest.importorskip("torchvision")
  from torchvision.models.detection import _utils as det_utils
  rng = np.random.default_rng(3)
  anchors, boxes = _random_boxes(rng, 300), _random_boxes(rng, 300)
  ref = det_utils.BoxCoder(weights)
  want = ref.encode_single(torch.from_numpy(boxes), torch.from_numpy(anchors)).numpy()
  np.testing.assert_allclose(coders.encode(anchors, boxes, weights=weights), want,
                             rtol=1e-5, atol=1e-5)
  deltas = rng.normal(0, 2, (300, 4)).astype(np.float32)
  deltas[:10, 2:] = 20.0  # hits the clamp
  want = ref.decode_single(torch.from_numpy(deltas), torch.from_numpy(anchors)).numpy()
  np.testing.assert_allclose(coders.BoxCoder(weights).decode(anchors, deltas), want,
                             rtol=1e-5, atol=1e-3)
