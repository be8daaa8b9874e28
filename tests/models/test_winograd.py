"""Winograd F(2x2,3x3) against XLA's direct convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxdet.models import winograd


def _direct(x, w):
  return lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  precision=lax.Precision.HIGHEST)


@pytest.mark.parametrize("shape", [(1, 2, 2, 1, 1), (2, 8, 6, 5, 7), (3, 10, 12, 16, 4)])
def test_equals_direct_convolution(shape):
  b, h, w_, cin, cout = shape
  rng = np.random.default_rng(sum(shape))
  x = jnp.asarray(rng.normal(size=(b, h, w_, cin)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, cin, cout)), jnp.float32)
  got, want = winograd.conv3x3_same(x, w), _direct(x, w)
  assert got.shape == want.shape and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(want))))


def test_single_pixel_kernels_pick_each_tap():
  # A kernel with one non-zero tap shifts the image by that tap: exercises every tile position.
  x = jnp.arange(1.0, 1 + 6 * 8).reshape(1, 6, 8, 1)
  for ky in range(3):
    for kx in range(3):
      w = jnp.zeros((3, 3, 1, 1)).at[ky, kx, 0, 0].set(1.0)
      np.testing.assert_allclose(winograd.conv3x3_same(x, w), _direct(x, w), atol=1e-5)


def test_gradients_equal_direct():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 6, 8, 4)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(3, 3, 4, 3)), jnp.float32)
  cot = jnp.asarray(rng.normal(size=(2, 6, 8, 3)), jnp.float32)
  grad = lambda f: jax.grad(lambda a, b: jnp.sum(f(a, b) * cot), argnums=(0, 1))(x, w)
  for g, r in zip(grad(winograd.conv3x3_same), grad(_direct)):
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(r))))


@pytest.mark.parametrize("x_shape,w_shape", [((1, 5, 6, 2), (3, 3, 2, 2)),
                                             ((1, 6, 6, 2), (5, 5, 2, 2)),
                                             ((1, 6, 6, 2), (3, 3, 3, 2))])
def test_rejects_odd_maps_and_other_kernels(x_shape, w_shape):
  with pytest.raises(ValueError, match="even H, W"):
    winograd.conv3x3_same(jnp.zeros(x_shape), jnp.zeros(w_shape))
