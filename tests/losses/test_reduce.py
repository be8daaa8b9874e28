"""Masked reductions: normalisation by max(num_positives, 1), no leakage of masked values."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdet import losses


def test_normalized_sum_matches_numpy():
  rng = np.random.default_rng(0)
  v = rng.normal(size=(4, 6)).astype(np.float32)
  m = rng.uniform(size=(4, 6)) > 0.5
  got = losses.normalized_sum(v, m, num_positives=m.sum())
  np.testing.assert_allclose(got, (v * m).sum() / max(m.sum(), 1), rtol=1e-6)


def test_empty_mask_gives_zero_and_finite_grad_even_with_inf_values():
  v = jnp.asarray([jnp.inf, jnp.nan, 1.0])
  mask = jnp.zeros(3, bool)
  assert float(losses.normalized_sum(v, mask, num_positives=0)) == 0.0
  assert float(losses.masked_mean(v, mask)) == 0.0
  g = jax.grad(lambda x: losses.normalized_sum(x * 2.0, mask, num_positives=0))(jnp.ones(3))
  np.testing.assert_array_equal(g, np.zeros(3))


def test_float_weights_and_masked_mean():
  v = jnp.asarray([1.0, 2.0, 3.0, 4.0])
  w = jnp.asarray([0.5, 0.0, 2.0, 0.0])
  np.testing.assert_allclose(losses.masked_sum(v, w), 0.5 + 6.0)
  np.testing.assert_allclose(losses.masked_mean(v, w > 0), 2.0)
  np.testing.assert_allclose(losses.safe_normalizer(0.25), 1.0)
