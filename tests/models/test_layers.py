"""Shared layers: max-pool values and its hand-written gradient against XLA's."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet.models import layers


def _reference_max_pool(x, *, window, stride, padding):
  pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  x = jnp.pad(x, pad, constant_values=-jnp.inf)
  return nn.max_pool(x, window_shape=(window, window), strides=(stride, stride), padding="VALID")


@pytest.mark.parametrize("window,stride,padding", [(3, 2, 1), (2, 2, 0), (5, 1, 2), (3, 3, 0)])
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool_value_and_gradient_equal_xla(window, stride, padding, ties):
  rng = np.random.default_rng(window * 10 + stride)
  x = rng.normal(size=(2, 11, 10, 3))
  if ties:  # few distinct values: most windows hold their maximum more than once
    x = np.round(x)
  x = jnp.asarray(x, jnp.float32)
  kw = dict(window=window, stride=stride, padding=padding)
  y = layers.max_pool(x, **kw)
  np.testing.assert_array_equal(y, _reference_max_pool(x, **kw))
  cot = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
  got = jax.grad(lambda a: jnp.sum(layers.max_pool(a, **kw) * cot))(x)
  want = jax.grad(lambda a: jnp.sum(_reference_max_pool(a, **kw) * cot))(x)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_max_pool_gradient_goes_to_first_maximum_only():
  x = jnp.ones((1, 2, 2, 1))  # one window, four equal maxima
  g = jax.grad(lambda a: jnp.sum(layers.max_pool(a, window=2, stride=2, padding=0)))(x)
  np.testing.assert_array_equal(g[0, :, :, 0], [[1.0, 0.0], [0.0, 0.0]])


def _pool_grad_hlo(option, platform):
  x = jnp.ones((2, 9, 9, 3))
  g = jax.jit(jax.grad(lambda a: jnp.sum(layers.max_pool(
      a, window=3, stride=2, padding=1, cpu_train_kernels=option) ** 2)))
  return g.trace(x).lower(lowering_platforms=(platform,)).as_text()


def test_max_pool_gradient_avoids_select_and_scatter_only_on_cpu():
  # Lowered for each platform without its hardware: the gate is `lax.platform_dependent`.
  assert "select_and_scatter" not in _pool_grad_hlo("auto", "cpu")
  assert "select_and_scatter" in _pool_grad_hlo("auto", "cuda")
  assert "select_and_scatter" in _pool_grad_hlo("off", "cpu")


@pytest.mark.parametrize("option", ["auto", "off"])
def test_max_pool_forward_mode_equals_xla(option):
  rng = np.random.default_rng(3)
  x = jnp.asarray(np.round(rng.normal(size=(2, 9, 8, 3))), jnp.float32)  # with ties
  t = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  kw = dict(window=3, stride=2, padding=1)
  ours = lambda a: layers.max_pool(a, **kw, cpu_train_kernels=option)
  ref = lambda a: _reference_max_pool(a, **kw)
  y, ty = jax.jit(lambda a, b: jax.jvp(ours, (a,), (b,)))(x, t)
  y_ref, ty_ref = jax.jvp(ref, (x,), (t,))
  np.testing.assert_array_equal(y, y_ref)
  np.testing.assert_allclose(ty, ty_ref, rtol=1e-6, atol=1e-6)
  small = x[:1, :5, :5, :1]
  np.testing.assert_allclose(jax.jacfwd(ours)(small), jax.jacrev(ref)(small), atol=1e-6)


def test_max_pool_rejects_unknown_option():
  with pytest.raises(ValueError, match="cpu_train_kernels"):
    layers.max_pool(jnp.ones((1, 4, 4, 1)), window=2, stride=2, padding=0, cpu_train_kernels="on")
