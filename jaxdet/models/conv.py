"""Convolution that runs in cache-sized batch chunks when trained on CPU.

On CPU, XLA convolutions over activations larger than the last-level cache run well below the
speed of the same work split into chunks of a few MB, and the weight gradient most of all
(measured on a 2-core EPYC, 3x3 256->256 conv on 8x64x64: forward 254 -> 220 ms, weight gradient
495 -> 230 ms when run image by image). Under differentiation on CPU this convolution therefore
runs batch chunk by batch chunk: forward, input gradient and weight gradient (summed over
chunks) are the same arithmetic as one convolution; the forward of wide 3x3 layers on large maps
uses Winograd F(2x2,3x3) (`jaxdet.models.winograd`, equal to rounding), which does 2.25x fewer
multiplies. Plain evaluation (inference, export) and other platforms (GPU, TPU) lower one
`lax.conv_general_dilated`.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxdet.models import winograd

# Input bytes per chunk: a few MB keeps a chunk's operands in L2/L3 cache. On the 2-core EPYC
# of BENCHMARKS.md chunks of 1-8 MB train RetinaNet-R18 at 512 px equally fast (within noise)
# and 10% faster than unchunked.
CHUNK_BYTES = 4 << 20
# Forward and input gradient are chunked only for kernels of at least this size (measured as
# above: 3x3 64->128 and larger kernels gain, the 7x7x3 stem and 3x3 64->64 lose).
CHUNK_MIN_KERNEL_BYTES = 256 << 10
# Winograd for the forward of 3x3 stride-1 convs with >= this many input channels (and half as
# many outputs) on maps >= WINOGRAD_MIN_SIZE: measured per image on the
# 2-core EPYC, 256->256 on 64x64 forward 228 -> 177 ms, 256->180 187 -> 147 ms; but 256->256 on
# 32x32, 128->128 on 64x64 and 64->64 on 128x128 are slower than direct.
WINOGRAD_MIN_CHANNELS = 256
WINOGRAD_MIN_SIZE = 64
# At most this many chunks: each is a separate convolution in the compiled program.
MAX_CHUNKS = 16


def batch_chunk(batch, image_bytes):
  """Chunk size for a batch of `batch` images of `image_bytes` input each.

  Returns the largest divisor of `batch` whose chunk input fits in `CHUNK_BYTES`, while keeping
  at most `MAX_CHUNKS` chunks; `batch` itself means no chunking (also for a symbolic batch).
  """
  if not isinstance(batch, int) or batch <= 1:
    return batch
  divisors = [c for c in range(1, batch + 1) if batch % c == 0 and batch // c <= MAX_CHUNKS]
  fitting = [c for c in divisors if c * image_bytes <= CHUNK_BYTES]
  return max(fitting) if fitting else min(divisors)


def _winograd_pays(lhs, rhs, dn, strides, padding, lhs_dilation, rhs_dilation, groups,
                   preferred_element_type):
  """Whether the training forward should use Winograd F(2x2,3x3): a stride-1 SAME 3x3 NHWC
  conv with at least WINOGRAD_MIN_CHANNELS channels in and half that out, on maps of at least
  WINOGRAD_MIN_SIZE (even) pixels a side, in float32 (its transforms would round in bf16)."""
  if lhs.dtype != jnp.float32 or rhs.dtype != jnp.float32:
    return False
  nhwc = dn == lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
  if not (nhwc and rhs.shape[:2] == (3, 3) and groups == 1 and preferred_element_type is None):
    return False
  if isinstance(padding, str) or tuple(map(tuple, padding)) != ((1, 1), (1, 1)):
    return False
  if any(tuple(d or (1, 1)) != (1, 1) for d in (strides, lhs_dilation, rhs_dilation)):
    return False
  _, h, w, cin = lhs.shape
  return (cin >= WINOGRAD_MIN_CHANNELS and rhs.shape[3] >= WINOGRAD_MIN_CHANNELS // 2
          and min(h, w) >= WINOGRAD_MIN_SIZE and h % 2 == 0 and w % 2 == 0)


# Values of the `cpu_train_kernels` option of `conv_general_dilated`, `Conv`, `ConvBN` and
# `layers.max_pool`.
CPU_TRAIN_KERNELS = ("auto", "off")


def check_cpu_train_kernels(value):
  """Raises a one-line ValueError unless `value` is one of `CPU_TRAIN_KERNELS`."""
  if value not in CPU_TRAIN_KERNELS:
    raise ValueError(f"cpu_train_kernels must be one of {CPU_TRAIN_KERNELS}, got {value!r}")


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None, *, cpu_train_kernels="auto"):
  """`lax.conv_general_dilated` (same signature and values) computed in batch chunks when
  differentiated on CPU.

  Shapes as `lax.conv_general_dilated`, e.g. NHWC lhs float32 `[B,H,W,Cin]`, HWIO rhs
  `[kh,kw,Cin/groups,Cout]` -> `[B,H',W',Cout]`.

  `cpu_train_kernels`: "auto" (default) differentiates through the chunked/Winograd kernels when
  the program is lowered for CPU and through the plain convolution elsewhere; "off" is exactly
  `lax.conv_general_dilated` on every platform. Both support reverse mode (`jax.grad`) and
  forward mode (`jax.jvp`, `jax.jacfwd`), to any order.
  """
  check_cpu_train_kernels(cpu_train_kernels)
  conv = functools.partial(
      lax.conv_general_dilated, window_strides=window_strides, padding=padding,
      lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count, batch_group_count=batch_group_count,
      precision=precision, preferred_element_type=preferred_element_type)
  if cpu_train_kernels == "off":
    return conv(lhs, rhs)
  dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  batch_axis, out_batch_axis = dn.lhs_spec[0], dn.out_spec[0]
  batch = lhs.shape[batch_axis]
  chunk = batch_chunk(batch, lhs.size // batch * lhs.dtype.itemsize if batch else 0)
  if batch_group_count != 1 or chunk == batch:
    return conv(lhs, rhs)

  def chunked(x, w, op=conv):
    return jnp.concatenate(
        [op(lax.slice_in_dim(x, i, i + chunk, axis=batch_axis), w)
         for i in range(0, batch, chunk)], axis=out_batch_axis)

  # Chunking always pays for the kernel gradient; for the forward and input gradient only with a
  # large kernel (unchunked is faster for the ResNet stem and 64-channel layers). Wide 3x3 layers
  # on large maps run their forward by Winograd (their input gradient by Winograd measured no
  # faster than direct, and its transforms cost memory).
  on_cpu = lambda fn: lambda x, w: lax.platform_dependent(x, w, cpu=fn, default=conv)
  input_conv = on_cpu(chunked if rhs.size * rhs.dtype.itemsize >= CHUNK_MIN_KERNEL_BYTES else conv)
  kernel_conv = on_cpu(chunked)
  if _winograd_pays(lhs, rhs, dn, window_strides, padding, lhs_dilation, rhs_dilation,
                    feature_group_count, preferred_element_type):
    forward_conv = on_cpu(functools.partial(chunked, op=winograd.conv3x3_same))
  else:
    forward_conv = input_conv

  # custom_jvp so that only differentiated code (training) takes the chunked, platform-dependent
  # path; the primal below is what inference and ONNX export trace. The tangent is the product
  # rule written with the chunked convolutions, linear in (tx, tw): forward mode evaluates it,
  # and reverse mode transposes it, which gives per chunk the conv transposes of
  # `lax.conv_general_dilated` (input gradient) and the kernel gradient summed over chunks.
  # (A custom_vjp would do the same for reverse mode but cannot be jvp'd.)
  @functools.partial(jax.custom_jvp)
  def f(x, w):
    return conv(x, w)

  def f_jvp(primals, tangents):
    x, w = primals
    tx, tw = tangents
    terms = []
    # Symbolic zeros (the image, frozen weights) skip their term instead of convolving zeros.
    if not isinstance(tx, jax.custom_derivatives.SymbolicZero):
      terms.append(input_conv(tx, w))
    if not isinstance(tw, jax.custom_derivatives.SymbolicZero):
      terms.append(kernel_conv(x, tw))
    y = forward_conv(x, w)
    return y, functools.reduce(jnp.add, terms) if terms else jnp.zeros_like(y)

  f.defjvp(f_jvp, symbolic_zeros=True)
  return f(lhs, rhs)


class Conv(nn.Conv):
  """`flax.linen.Conv` (same parameters and outputs) using `conv_general_dilated` above.

  Attributes:
    cpu_train_kernels: "auto" (chunked/Winograd kernels when differentiated on CPU) or "off"
      (plain `lax.conv_general_dilated` everywhere); see `conv_general_dilated`.
  """
  cpu_train_kernels: str = "auto"

  def __post_init__(self):
    # nn.Conv calls the function in its `conv_general_dilated` field; bind our option to it (also
    # on clone, which passes the previously bound one back in).
    fn = self.conv_general_dilated
    if fn is None or getattr(fn, "func", None) is conv_general_dilated:
      check_cpu_train_kernels(self.cpu_train_kernels)
      object.__setattr__(self, "conv_general_dilated", functools.partial(
          conv_general_dilated, cpu_train_kernels=self.cpu_train_kernels))
    super().__post_init__()
