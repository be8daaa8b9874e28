"""jaxdet.ops.boxes against plain-loop NumPy references (float64) and property checks."""

import functools
import math

import chex
import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet import ops, testing


# Degenerate (zero-side) boxes included.
random_boxes_xyxy = functools.partial(testing.random_boxes_xyxy, wh_range=(0.0, 50.0))


# --- plain-loop references (one pair at a time, torchvision's formulas) ---

def ref_terms(a, b):
  a = [float(v) for v in a]
  b = [float(v) for v in b]
  area_a = (a[2] - a[0]) * (a[3] - a[1])
  area_b = (b[2] - b[0]) * (b[3] - b[1])
  inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)
  union = area_a + area_b - inter
  cw = max(a[2], b[2]) - min(a[0], b[0])
  ch = max(a[3], b[3]) - min(a[1], b[1])
  center_sq = (((a[0] + a[2]) / 2 - (b[0] + b[2]) / 2)**2 +
               ((a[1] + a[3]) / 2 - (b[1] + b[3]) / 2)**2)
  v = 4 / math.pi**2 * (math.atan((b[2] - b[0]) / (b[3] - b[1])) -
                        math.atan((a[2] - a[0]) / (a[3] - a[1])))**2
  return inter, union, cw * ch, cw * cw + ch * ch, center_sq, v


def ref_pairwise(kind, boxes1, boxes2, eps=1e-7):
  out = np.zeros((len(boxes1), len(boxes2)))
  for i, a in enumerate(boxes1):
    for j, b in enumerate(boxes2):
      inter, union, area_c, diag_sq, center_sq, v = ref_terms(a, b)
      iou = inter / union
      if kind == "iou":
        out[i, j] = iou
      elif kind == "giou":
        out[i, j] = iou - (area_c - union) / area_c
      elif kind == "diou":
        out[i, j] = iou - center_sq / (diag_sq + eps)
      else:
        alpha = v / (1 - iou + v + eps)
        out[i, j] = iou - center_sq / (diag_sq + eps) - alpha * v
  return out


def ref_loss(kind, boxes1, boxes2, eps=1e-7):
  out = np.zeros(len(boxes1))
  for i, (a, b) in enumerate(zip(boxes1, boxes2)):
    inter, union, area_c, diag_sq, center_sq, v = ref_terms(a, b)
    iou = inter / (union + eps)
    if kind == "giou":
      out[i] = 1 - (iou - (area_c - union) / (area_c + eps))
    elif kind == "diou":
      out[i] = 1 - iou + center_sq / (diag_sq + eps)
    else:
      out[i] = 1 - iou + center_sq / (diag_sq + eps) + v**2 / (1 - iou + v + eps)
  return out


PAIRWISE = {"iou": ops.box_iou, "giou": ops.generalized_box_iou, "diou": ops.distance_box_iou,
            "ciou": ops.complete_box_iou}
LOSSES = {"giou": ops.generalized_box_iou_loss, "diou": ops.distance_box_iou_loss,
          "ciou": ops.complete_box_iou_loss}


@pytest.mark.parametrize("kind", list(PAIRWISE))
def test_pairwise_matches_loop_reference(kind):
  rng = np.random.default_rng(0)
  boxes1 = random_boxes_xyxy(rng, 13)
  boxes2 = np.concatenate([random_boxes_xyxy(rng, 10), boxes1[:3]])  # include exact matches
  boxes1[:, 2:] += 0.5  # strictly positive sizes: the reference divides by w and h
  boxes2[:, 2:] += 0.5
  got = jax.jit(PAIRWISE[kind])(boxes1, boxes2)
  chex.assert_shape(got, (13, 13))
  chex.assert_type(got, jnp.float32)
  np.testing.assert_allclose(got, ref_pairwise(kind, boxes1, boxes2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", list(LOSSES))
def test_losses_match_loop_reference(kind):
  rng = np.random.default_rng(1)
  boxes1 = random_boxes_xyxy(rng, 50) + np.float32([0, 0, 0.5, 0.5])
  boxes2 = random_boxes_xyxy(rng, 50, xy_range=(0, 30)) + np.float32([0, 0, 0.5, 0.5])
  boxes2[:5] = boxes1[:5]
  got = jax.jit(LOSSES[kind])(boxes1, boxes2)
  chex.assert_shape(got, (50,))
  chex.assert_type(got, jnp.float32)
  np.testing.assert_allclose(got, ref_loss(kind, boxes1, boxes2), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got[:5], 0, atol=1e-6)  # identical boxes: zero loss


@pytest.mark.parametrize("kind", list(PAIRWISE))
def test_pairwise_leading_batch_dims(kind):
  rng = np.random.default_rng(2)
  boxes1 = random_boxes_xyxy(rng, 2 * 3 * 5).reshape(2, 3, 5, 4)
  boxes2 = random_boxes_xyxy(rng, 2 * 3 * 7).reshape(2, 3, 7, 4)
  fn = jax.jit(PAIRWISE[kind])
  got = fn(boxes1, boxes2)
  chex.assert_shape(got, (2, 3, 5, 7))
  for i in range(2):
    for j in range(3):
      np.testing.assert_allclose(got[i, j], fn(boxes1[i, j], boxes2[i, j]), rtol=1e-6)
  # Broadcasting: one set of boxes2 for every image.
  np.testing.assert_allclose(fn(boxes1, boxes2[0, 0]),
                             fn(boxes1, np.broadcast_to(boxes2[0, 0], (2, 3, 7, 4))))


DEGENERATE = np.array([
    [5, 5, 5, 5],      # a point
    [0, 0, 0, 10],     # zero width
    [10, 10, 0, 0],    # inverted in both axes
    [0, 10, 10, 0],    # inverted in y
    [5, 5, 5, 5],      # the same point again (union 0, enclosing area 0)
    [0, 0, 10, 10],    # a normal box
], np.float32)


@pytest.mark.parametrize("kind", list(PAIRWISE))
def test_pairwise_degenerate_boxes_finite_values_and_grads(kind):
  fn = PAIRWISE[kind]
  values = jax.jit(fn)(DEGENERATE, DEGENERATE)
  assert np.isfinite(values).all()
  if kind == "iou":
    assert values[0, 4] == 0 and values[5, 5] == 1
  grads = jax.jit(jax.grad(lambda b1, b2: fn(b1, b2).sum(), argnums=(0, 1)))(DEGENERATE,
                                                                             DEGENERATE)
  for g in grads:
    assert np.isfinite(g).all()


@pytest.mark.parametrize("kind", list(LOSSES))
def test_losses_degenerate_boxes_finite_values_and_grads(kind):
  fn = LOSSES[kind]
  pred = np.repeat(DEGENERATE, len(DEGENERATE), axis=0)
  target = np.tile(DEGENERATE, (len(DEGENERATE), 1))
  assert np.isfinite(jax.jit(fn)(pred, target)).all()
  grads = jax.jit(jax.grad(lambda p, t: fn(p, t).sum(), argnums=(0, 1)))(pred, target)
  for g in grads:
    assert np.isfinite(g).all()


@pytest.mark.parametrize("kind", list(LOSSES))
def test_loss_gradient_matches_finite_differences(kind):
  rng = np.random.default_rng(3)
  pred = random_boxes_xyxy(rng, 4, xy_range=(0, 20)).astype(np.float64) + [0, 0, 1, 1]
  target = random_boxes_xyxy(rng, 4, xy_range=(0, 20)).astype(np.float64) + [0, 0, 1, 1]
  # CIoU's alpha carries no gradient (as torchvision): differentiate with alpha frozen at pred.
  alpha = np.zeros(4)
  for i in range(4):
    inter, union, _, _, _, v = ref_terms(pred[i], target[i])
    iou = inter / (union + 1e-7)
    alpha[i] = v / (1 - iou + v + 1e-7)

  def reference(p):
    loss = ref_loss("diou" if kind == "ciou" else kind, p, target)
    if kind == "ciou":
      loss += alpha * np.array([ref_terms(p[i], target[i])[5] for i in range(4)])
    return loss.sum()

  with jax.enable_x64(True):
    loss_sum = lambda p: LOSSES[kind](p, jnp.asarray(target)).sum()
    grad = np.asarray(jax.jit(jax.grad(loss_sum))(pred))
  h = 1e-6
  for idx in [(0, 0), (1, 2), (2, 3), (3, 1)]:
    up, down = pred.copy(), pred.copy()
    up[idx] += h
    down[idx] -= h
    numeric = (reference(up) - reference(down)) / (2 * h)
    assert grad[idx] == pytest.approx(numeric, rel=1e-4, abs=1e-6)


def test_loss_broadcasting_and_batch_dims():
  rng = np.random.default_rng(4)
  pred = random_boxes_xyxy(rng, 6).reshape(2, 3, 4)
  target = random_boxes_xyxy(rng, 3)
  got = ops.generalized_box_iou_loss(pred, target)
  chex.assert_shape(got, (2, 3))
  np.testing.assert_allclose(got[1], ops.generalized_box_iou_loss(pred[1], target))


@pytest.mark.parametrize("fmt", ["xywh", "cxcywh"])
def test_box_convert_round_trip_and_values(fmt):
  boxes = np.array([[1, 2, 5, 10], [0, 0, 0, 0], [-3, 4, 7, 4.5]], np.float32)
  converted = ops.box_convert(boxes, "xyxy", fmt)
  x1, y1, x2, y2 = boxes.T
  w, h = x2 - x1, y2 - y1
  expected = (np.stack([x1, y1, w, h], 1) if fmt == "xywh" else
              np.stack([(x1 + x2) / 2, (y1 + y2) / 2, w, h], 1))
  np.testing.assert_allclose(converted, expected)
  np.testing.assert_allclose(ops.box_convert(converted, fmt, "xyxy"), boxes, atol=1e-6)
  other = "cxcywh" if fmt == "xywh" else "xywh"
  np.testing.assert_allclose(ops.box_convert(ops.box_convert(converted, fmt, other), other, fmt),
                             converted, atol=1e-6)
  np.testing.assert_array_equal(ops.box_convert(boxes, fmt, fmt), boxes)


def test_box_area_clip_and_small_boxes():
  boxes = np.array([[[-5, 2, 30, 8], [1, 1, 1.5, 9]], [[0, 0, 4, 4], [10, -1, 12, 50]]],
                   np.float32)
  np.testing.assert_allclose(ops.box_area(boxes), [[35 * 6, 0.5 * 8], [16, 2 * 51]])
  clipped = ops.clip_boxes_to_image(boxes, (20, 25))  # (height, width)
  np.testing.assert_allclose(clipped, [[[0, 2, 25, 8], [1, 1, 1.5, 9]],
                                       [[0, 0, 4, 4], [10, 0, 12, 20]]])
  per_image = ops.clip_boxes_to_image(boxes, (np.array([[20], [3]]), np.array([[25], [3]])))
  np.testing.assert_allclose(per_image[1], [[0, 0, 3, 3], [3, 0, 3, 3]])
  mask = ops.remove_small_boxes(boxes, 1.0)
  chex.assert_type(mask, bool)
  np.testing.assert_array_equal(mask, [[True, False], [True, True]])


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(ValueError, match="format"):
    ops.box_convert(np.zeros((2, 4)), "xyxy", "yxyx")
  with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
    ops.box_iou(np.zeros((2, 3)), np.zeros((2, 4)))
  with pytest.raises(ValueError, match="Pairwise"):
    ops.box_iou(np.zeros((4,)), np.zeros((2, 4)))


# --- properties ---

_coord = st.floats(-50, 50, width=32)
# A fixed shape, so the jitted functions compile once for all examples.
_boxes = hnp.arrays(np.float32, (6, 4), elements=_coord)


@jax.jit
def _all_pairwise(boxes1, boxes2):
  return {kind: fn(boxes1, boxes2) for kind, fn in PAIRWISE.items()}


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(boxes1=_boxes, boxes2=_boxes)
def test_properties_symmetry_and_ranges(boxes1, boxes2):
  out = {k: np.asarray(v) for k, v in _all_pairwise(boxes1, boxes2).items()}
  swapped = {k: np.asarray(v) for k, v in _all_pairwise(boxes2, boxes1).items()}
  # All four are of size <= ~2 and rounded a few times in float32 (measured: <= 2 ulps of 1).
  atol = testing.f32_atol(1.0)
  for kind in PAIRWISE:
    assert np.isfinite(out[kind]).all(), kind
    np.testing.assert_allclose(out[kind], swapped[kind].T, atol=atol, err_msg=kind)
  iou, giou = out["iou"], out["giou"]
  np.testing.assert_array_equal(iou, swapped["iou"].T)  # bitwise: NMS relies on it
  assert (iou >= 0).all() and (iou <= 1 + atol).all()
  assert (giou >= -1 - atol).all() and (giou <= iou + atol).all()


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(boxes=_boxes, seed=st.integers(0, 2**16))
def test_properties_permutation_equivariance(boxes, seed):
  perm = np.random.default_rng(seed).permutation(len(boxes))
  iou = np.asarray(_all_pairwise(boxes, boxes)["iou"])
  np.testing.assert_array_equal(np.asarray(_all_pairwise(boxes[perm], boxes)["iou"]), iou[perm])
  # A box is its own perfect match when its float32 area is a normal number; a subnormal width
  # (e.g. 1e-45) has an area that underflows to 0, and an empty box has IoU 0 by definition.
  w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
  valid = (w > 0) & (h > 0) & (w * h >= np.finfo(np.float32).tiny)
  np.testing.assert_allclose(np.diag(iou)[valid], 1, rtol=testing.f32_atol(1.0))


def test_jit_vmap_and_dtype_preserved():
  rng = np.random.default_rng(5)
  boxes = random_boxes_xyxy(rng, 3 * 4).reshape(3, 4, 4)
  vmapped = jax.jit(jax.vmap(ops.box_iou))(boxes, boxes)
  np.testing.assert_allclose(vmapped, ops.box_iou(boxes, boxes))
  with jax.enable_x64(True):
    chex.assert_type(ops.box_iou(boxes.astype(np.float64), boxes.astype(np.float64)), jnp.float64)
  chex.assert_type(ops.box_area(np.ones((2, 4), np.int32)), jnp.float32)
