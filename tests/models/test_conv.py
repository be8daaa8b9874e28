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


def _cpu_hlo(jitted, *args):
  """StableHLO of `jitted` lowered for CPU (also when the tests run on a GPU)."""
  return jitted.trace(*args).lower(lowering_platforms=("cpu",)).as_text()


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
    return _cpu_hlo(grad, x, w).count("stablehlo.convolution")

  all_chunked = count()
  monkeypatch.setattr(conv_lib, "CHUNK_MIN_KERNEL_BYTES", w.size * 4 + 1)
  # Forward and input gradient: one conv each instead of one per chunk.
  assert all_chunked - count() == 2 * (4 - 1)


def test_no_chunking_when_everything_fits():
  x, w, _, chunked = _convs(_CASES[0])  # 4 images of 2 KB each: far below CHUNK_BYTES
  grad = jax.make_jaxpr(jax.grad(lambda a, b: jnp.sum(chunked(a, b)), argnums=(0, 1)))(x, w)
  assert "platform_index" not in str(grad)


def test_flax_conv_has_nn_conv_parameters(tiny_chunks):
  x = jnp.ones((2, 8, 8, 3))
  ours, ref = conv_lib.Conv(4, (3, 3)), nn.Conv(4, (3, 3))
  v_ours = ours.init(jax.random.key(0), x)
  v_ref = ref.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, v_ours) == jax.tree.map(jnp.shape, v_ref)
  np.testing.assert_array_equal(ours.apply(v_ref, x), ref.apply(v_ref, x))


@pytest.fixture
def small_winograd(monkeypatch):
  """Winograd for the small test layers (>= 6 channels in, maps >= 8 px)."""
  monkeypatch.setattr(conv_lib, "WINOGRAD_MIN_CHANNELS", 6)
  monkeypatch.setattr(conv_lib, "WINOGRAD_MIN_SIZE", 8)


def _winograd_case(batch):
  """A 3x3 stride-1 SAME conv, 6 -> 5 channels on 8x10 maps (Winograd under `small_winograd`)."""
  return _convs(((batch, 8, 10, 6), (3, 3, 6, 5), (1, 1), ((1, 1), (1, 1)), (1, 1), 1,
                 ("NHWC", "HWIO", "NHWC")))


def test_wide_3x3_layers_train_through_winograd(tiny_chunks, small_winograd):
  x, w, plain, chunked = _winograd_case(4)
  cot = jnp.asarray(np.random.default_rng(2).normal(size=(4, 8, 10, 5)), jnp.float32)
  loss = lambda f: lambda a, b: jnp.sum(f(a, b) * cot)
  grad = jax.jit(jax.value_and_grad(loss(chunked), argnums=(0, 1)))
  assert "dot_general" in _cpu_hlo(grad, x, w)  # the Winograd tile products
  val, got = grad(x, w)
  want = jax.grad(loss(plain), argnums=(0, 1))(x, w)
  np.testing.assert_allclose(val, loss(plain)(x, w), rtol=1e-5)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(r))))
  # An odd map size, a stride or a narrow layer falls back to the direct convolution.
  x_odd, w_odd, _, chunked_odd = _convs(_CASES[0])
  odd = jax.jit(jax.grad(lambda a, b: jnp.sum(chunked_odd(a, b)), argnums=(0, 1)))
  assert "dot_general" not in _cpu_hlo(odd, x_odd, w_odd)


def test_bf16_layers_do_not_use_winograd(tiny_chunks, small_winograd):
  x = jnp.ones((4, 8, 10, 6), jnp.bfloat16)
  w = jnp.ones((3, 3, 6, 5), jnp.bfloat16)
  f = lambda a, b: jnp.sum(conv_lib.conv_general_dilated(
      a, b, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")))
  assert "dot_general" not in _cpu_hlo(jax.jit(jax.grad(f, argnums=(0, 1))), x, w)


def _grad_convs(chunked_fn, x, w, platform):
  grad = jax.jit(jax.grad(lambda a, b: jnp.sum(chunked_fn(a, b) ** 2), argnums=(0, 1)))
  return grad.trace(x, w).lower(lowering_platforms=(platform,)).as_text().count(
      "stablehlo.convolution")


def test_chunks_only_on_cpu_and_not_when_off(tiny_chunks):
  x, w, _, chunked = _convs(_CASES[0])  # batch 4 -> 4 chunks
  off = lambda a, b: conv_lib.conv_general_dilated(
      a, b, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
      cpu_train_kernels="off")
  # Lowered for each platform without its hardware: the gate is `lax.platform_dependent`.
  assert _grad_convs(chunked, x, w, "cpu") >= 3 * 4
  assert _grad_convs(chunked, x, w, "cuda") == 3  # forward, input and kernel gradient
  assert _grad_convs(off, x, w, "cpu") == 3


@pytest.mark.parametrize("case", _CASES)
@pytest.mark.parametrize("option", ["auto", "off"])
def test_forward_mode_equals_lax(case, option, tiny_chunks):
  x, w, plain, _ = _convs(case)
  _, w_shape, strides, padding, dilation, groups, dn = case
  ours = lambda a, b: conv_lib.conv_general_dilated(
      a, b, strides, padding, rhs_dilation=dilation, feature_group_count=groups,
      dimension_numbers=dn, cpu_train_kernels=option)
  rng = np.random.default_rng(3)
  tx = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  tw = jnp.asarray(rng.normal(size=w.shape), jnp.float32)
  y, ty = jax.jit(lambda *a: jax.jvp(ours, a[:2], a[2:]))(x, w, tx, tw)
  y_ref, ty_ref = jax.jvp(plain, (x, w), (tx, tw))
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(y_ref))))
  np.testing.assert_allclose(ty, ty_ref, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(ty_ref))))
  # jacfwd in the kernel alone (the input tangent is a symbolic zero) against reverse mode.
  jf = jax.jit(jax.jacfwd(lambda b: jnp.sum(ours(x, b) ** 2)))(w)
  jr = jax.grad(lambda b: jnp.sum(plain(x, b) ** 2))(w)
  np.testing.assert_allclose(jf, jr, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(jr))))


def test_forward_mode_through_winograd_and_second_order(tiny_chunks, small_winograd):
  x, w, plain, chunked = _winograd_case(2)
  loss = lambda f: lambda a, b: jnp.sum(jnp.tanh(f(a, b)))
  tw = jnp.ones_like(w)
  # Forward-over-reverse (Hessian-vector product) and jacfwd of the whole input.
  hvp = lambda f: jax.jvp(jax.grad(loss(f), argnums=1), (x, w), (jnp.zeros_like(x), tw))[1]
  got, want = jax.jit(lambda: hvp(chunked))(), hvp(plain)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(want))))
  got = jax.jacfwd(loss(chunked))(x, w)
  want = jax.grad(loss(plain))(x, w)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(want))))


def test_flax_conv_option(tiny_chunks):
  x = jnp.ones((4, 8, 8, 3))
  on, off = conv_lib.Conv(4, (3, 3)), conv_lib.Conv(4, (3, 3), cpu_train_kernels="off")
  v = on.init(jax.random.key(0), x)
  grad = lambda m: jax.make_jaxpr(jax.grad(lambda p: jnp.sum(m.apply(p, x) ** 2)))(v)
  assert "platform_index" in str(grad(on)) and "platform_index" not in str(grad(off))
  assert on.clone(cpu_train_kernels="off").conv_general_dilated.keywords == {
      "cpu_train_kernels": "off"}
  with pytest.raises(ValueError, match="cpu_train_kernels must be one of"):
    conv_lib.Conv(4, (3, 3), cpu_train_kernels="cpu")
