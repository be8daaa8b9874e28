"""Focal-family losses vs NumPy formulas (and torchvision when installed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet import losses


def _np_focal(x, t, alpha, gamma):
  p = 1 / (1 + np.exp(-x))
  ce = -(t * np.log(p) + (1 - t) * np.log(1 - p))
  p_t = p * t + (1 - p) * (1 - t)
  loss = ce * (1 - p_t)**gamma
  if alpha >= 0:
    loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
  return loss


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 0.0), (0.5, 1.5)])
def test_sigmoid_focal_matches_numpy(alpha, gamma):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(7, 5)).astype(np.float64) * 3
  t = rng.uniform(size=(7, 5)).round(1)
  got = losses.sigmoid_focal_loss(jnp.asarray(x, jnp.float32), jnp.asarray(t, jnp.float32),
                                  alpha=alpha, gamma=gamma)
  np.testing.assert_allclose(got, _np_focal(x, t, alpha, gamma), rtol=1e-5, atol=1e-6)


def test_sigmoid_focal_matches_torchvision():
  torch = pytest.importorskip("torch")
  tv_ops = pytest.importorskip("torchvision.ops")
  rng = np.random.default_rng(1)
  x = rng.normal(size=(50, 4)).astype(np.float32) * 4
  t = (rng.uniform(size=(50, 4)) > 0.7).astype(np.float32)
  want = tv_ops.sigmoid_focal_loss(torch.tensor(x), torch.tensor(t), alpha=0.25, gamma=2.0,
                                   reduction="none").numpy()
  np.testing.assert_allclose(losses.sigmoid_focal_loss(x, t), want, rtol=1e-5, atol=1e-7)


def test_focal_extreme_logits_are_finite():
  x = jnp.asarray([-1e4, -50.0, 0.0, 50.0, 1e4])
  for t in (jnp.zeros(5), jnp.ones(5)):
    val, grad = jax.value_and_grad(lambda x: losses.sigmoid_focal_loss(x, t).sum())(x)
    assert np.isfinite(val) and np.all(np.isfinite(grad))


def test_varifocal_matches_numpy():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(6, 3)) * 2
  q = np.where(rng.uniform(size=(6, 3)) > 0.5, rng.uniform(size=(6, 3)), 0.0)
  p = 1 / (1 + np.exp(-x))
  bce = -(q * np.log(p) + (1 - q) * np.log(1 - p))
  want = np.where(q > 0, q, 0.75 * p**2) * bce
  got = losses.varifocal_loss(jnp.asarray(x, jnp.float32), jnp.asarray(q, jnp.float32))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
