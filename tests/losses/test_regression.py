"""Box regression losses vs NumPy and torchvision."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet import losses


@pytest.mark.parametrize("beta", [0.0, 1.0 / 9.0, 1.0])
def test_smooth_l1_matches_numpy(beta):
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(2, 10, 4))
  d = np.abs(a - b)
  want = d if beta == 0 else np.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta)
  np.testing.assert_allclose(losses.smooth_l1_loss(a, b, beta=beta), want, rtol=1e-6)


def test_smooth_l1_matches_torch():
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(2, 20, 4)).astype(np.float32)
  want = torch.nn.functional.smooth_l1_loss(torch.tensor(a), torch.tensor(b), beta=0.3,
                                            reduction="none").numpy()
  np.testing.assert_allclose(losses.smooth_l1_loss(a, b, beta=0.3), want, rtol=1e-6, atol=1e-7)


def _np_giou(b1, b2):
  area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
  lt, rb = np.maximum(b1[..., :2], b2[..., :2]), np.minimum(b1[..., 2:], b2[..., 2:])
  inter = np.prod(np.clip(rb - lt, 0, None), -1)
  union = area(b1) + area(b2) - inter
  clt, crb = np.minimum(b1[..., :2], b2[..., :2]), np.maximum(b1[..., 2:], b2[..., 2:])
  c = np.prod(crb - clt, -1)
  return 1 - (inter / union - (c - union) / c)


def test_giou_loss_matches_numpy():
  rng = np.random.default_rng(2)
  xy = rng.uniform(0, 50, size=(2, 30, 2))
  wh = rng.uniform(1, 30, size=(2, 30, 2))
  b1, b2 = np.concatenate([xy, xy + wh], -1)
  np.testing.assert_allclose(losses.giou_loss(b1.astype(np.float32), b2.astype(np.float32)),
                             _np_giou(b1, b2), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["giou", "diou", "ciou"])
def test_iou_losses_zero_on_identical_and_finite_on_degenerate(name):
  fn = losses.regression.IOU_LOSSES[name]
  b = jnp.asarray([[1.0, 2.0, 5.0, 9.0], [0.0, 0.0, 0.0, 0.0]])
  np.testing.assert_allclose(fn(b[:1], b[:1]), [0.0], atol=1e-5)
  grad = jax.grad(lambda p: fn(p, b[::-1]).sum())(b)
  assert np.all(np.isfinite(fn(b, b[::-1]))) and np.all(np.isfinite(grad))
