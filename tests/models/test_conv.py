"""Chunked-on-CPU convolution: same values and gradients as `lax.conv_general_dilated`."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxdet.models import conv as conv_lib


@pytest.mark.parametrize("batch,image_bytes,expected", [
    (8, 4 << 20, 1),  # one image per chunk fills the budget
    (8, 1 << 20, 4),
    (8, 3 << 20, 1),
    (6, 1 << 20, 3),  # largest divisor that fits
    (8, 1 << 10, 8),  # everything fits: no chunking
    (1, 64 << 20, 1),
    (64, 8 << 20, 4),  # over budget even per image: at most MAX_CHUNKS chunks
    (7, 8 << 20, 1),  # prime batch over budget: 7 chunks of 1
    (32, 8 << 20, 2),  # 32 chunks of 1 would exceed MAX_CHUNKS
])
def test_batch_chunk(batch, image_bytes, expected):
  assert conv_lib.batch_chunk(batch, image_bytes) == expected


def test_batch_chunk_leaves_symbolic_batch_alone():
  batch, = jax.export.symbolic_shape("N")
  assert conv_lib.batch_chunk(batch, 1 << 30) is batch


_CASES = [
    # (x shape, w shape, strides, padding, rhs_dilation, groups, dimension_numbers)
    ((4, 9, 9, 6), (3, 3, 6, 5), (1, 1), ((1, 1), (1, 1)), (1, 1), 1, ("NHWC", "HWIO", "NHWC")),
    ((4, 9, 8, 6), (3, 3, 6, 5), (2, 2), ((1, 1), (1, 1)), (1, 1), 1, ("NHWC", "HWIO", "NHWC")),
    ((4, 12, 12, 3), (7, 7, 3, 4), (2, 2), ((3, 3), (3, 3)), (1, 1), 1, ("NHWC", "HWIO", "NHWC")),
    ((6, 8, 8, 4), (3, 3, 2, 6), (1, 1), "SAME", (2, 2), 2, ("NHWC", "HWIO", "NHWC")),
    ((4, 6, 10, 10), (5, 6, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1, ("NCHW", "OIHW", "NCHW")),
]


def _convs(case):
  x_shape, w_shape, strides, padding, dilation, groups, dn = case
  kw = dict(window_strides=strides, padding=padding, rhs_dilation=dilation,
            feature_group_count=groups, dimension_numbers=dn)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
  w = jnp.asarray(rng.normal(size=w_shape), jnp.float32)
  return x, w, lambda a, b: lax.conv_general_dilated(a, b, **kw), lambda a, b: (
      conv_lib.conv_general_dilated(a, b, **kw))


@pytest.fixture
def tiny_chunks(monkeypatch):
  """A chunk budget of one image for the small test inputs, activations chunked too."""
  monkeypatch.setattr(conv_lib, "CHUNK_BYTES", 1)
  monkeypatch.setattr(conv_lib, "CHUNK_MIN_KERNEL_BYTES", 0)


@pytest.mark.parametrize("case", _CASES)
def test_values_and_gradients_equal_lax(case, tiny_chunks):
  x, w, plain, chunked = _convs(case)
  np.testing.assert_array_equal(chunked(x, w), plain(x, w))
  y = plain(x, w)
  cot = jnp.asarray(np.random.default_rng(1).normal(size=y.shape), jnp.float32)
  loss = lambda f: lambda a, b: jnp.sum(f(a, b) * cot)
  want = jax.jit(jax.grad(loss(plain), argnums=(0, 1)))(x, w)
  got = jax.jit(jax.grad(loss(chunked), argnums=(0, 1)))(x, w)
  for g, r in zip(got, want):
    chex.assert_equal_shape([g, r])
    chex.assert_type(g, r.dtype)
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(r))))
  # The forward value under differentiation is the chunked one; it must agree too.
  val, _ = jax.jit(jax.value_and_grad(loss(chunked)))(x, w)
  np.testing.assert_allclose(val, loss(plain)(x, w), rtol=1e-5)


def _count_convs(jaxpr):
  return str(jaxpr).count("conv_general_dilated[")


def test_training_path_is_chunked_and_inference_is_one_conv(tiny_chunks):
  x, w, _, chunked = _convs(_CASES[0])  # batch 4 -> 4 chunks
  primal = jax.make_jaxpr(chunked)(x, w)
  assert _count_convs(primal) == 1 and "platform_index" not in str(primal)
  grad = jax.make_jaxpr(jax.grad(lambda a, b: jnp.sum(chunked(a, b)), argnums=(0, 1)))(x, w)
  # Per chunk: forward, input gradient and kernel gradient, on the CPU branch.
  assert _count_convs(grad) >= 3 * 4


def test_small_kernels_chunk_only_the_kernel_gradient(tiny_chunks, monkeypatch):
  x, w, _, chunked = _convs(_CASES[0])  # batch 4 -> 4 chunks
  def count():  # a fresh jit each time: traces are cached regardless of module constants
    grad = jax.jit(jax.grad(lambda a, b: jnp.sum(chunked(a, b) ** 2), argnums=(0, 1)))
    return grad.lower(x, w).as_text().count("stablehlo.convolution")

  all_chunked = count()
  monkeypatch.setattr(conv_lib, "CHUNK_MIN_KERNEL_BYTES", w.size * 4 + 1)
  # Forward and input gradient: one conv each instead of one per chunk.
  assert all_chunked - count() == 2 * (4 - 1)


def test_no_chunking_when_everything_fits():
  x, w, _, chunked = _convs(_CASES[0])  # 4 images of 2 KB each: far below CHUNK_BYTES
  grad = jax.make_jaxpr(jax.grad(lambda a, b: jnp.sum(chunked(a, b)), argnums=(0, 1)))(x, w)
  assert "custom_vjp" not in str(grad) and "platform_index" not in str(grad)


def test_flax_conv_has_nn_conv_parameters(tiny_chunks):
  x = jnp.ones((2, 8, 8, 3))
  ours, ref = conv_lib.Conv(4, (3, 3)), nn.Conv(4, (3, 3))
  v_ours = ours.init(jax.random.key(0), x)
  v_ref = ref.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, v_ours) == jax.tree.map(jnp.shape, v_ref)
  np.testing.assert_array_equal(ours.apply(v_ref, x), ref.apply(v_ref, x))


def test_wide_3x3_layers_train_through_winograd(tiny_chunks, monkeypatch):
  monkeypatch.setattr(conv_lib, "WINOGRAD_MIN_CHANNELS", 6)
  monkeypatch.setattr(conv_lib, "WINOGRAD_MIN_SIZE", 8)
  case = ((4, 8, 10, 6), (3, 3, 6, 5), (1, 1), ((1, 1), (1, 1)), (1, 1), 1,
          ("NHWC", "HWIO", "NHWC"))
  x, w, plain, chunked = _convs(case)
  cot = jnp.asarray(np.random.default_rng(2).normal(size=(4, 8, 10, 5)), jnp.float32)
  loss = lambda f: lambda a, b: jnp.sum(f(a, b) * cot)
  grad = jax.jit(jax.value_and_grad(loss(chunked), argnums=(0, 1)))
  assert "dot_general" in grad.lower(x, w).as_text()  # the Winograd tile products
  val, got = grad(x, w)
  want = jax.grad(loss(plain), argnums=(0, 1))(x, w)
  np.testing.assert_allclose(val, loss(plain)(x, w), rtol=1e-5)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(r))))
  # An odd map size, a stride or a narrow layer falls back to the direct convolution.
  x_odd, w_odd, _, chunked_odd = _convs(_CASES[0])
  odd = jax.jit(jax.grad(lambda a, b: jnp.sum(chunked_odd(a, b)), argnums=(0, 1)))
  assert "dot_general" not in odd.lower(x_odd, w_odd).as_text()


def test_bf16_layers_do_not_use_winograd(tiny_chunks, monkeypatch):
  monkeypatch.setattr(conv_lib, "WINOGRAD_MIN_CHANNELS", 6)
  monkeypatch.setattr(conv_lib, "WINOGRAD_MIN_SIZE", 8)
  x = jnp.ones((4, 8, 10, 6), jnp.bfloat16)
  w = jnp.ones((3, 3, 6, 5), jnp.bfloat16)
  f = lambda a, b: jnp.sum(conv_lib.conv_general_dilated(
      a, b, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")))
  assert "dot_general" not in jax.jit(jax.grad(f, argnums=(0, 1))).lower(x, w).as_text()
