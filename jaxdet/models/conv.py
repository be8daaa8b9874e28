"""Convolution that runs in cache-sized batch chunks when trained on CPU.

On CPU, XLA convolutions over activations larger than the last-level cache run well below the
speed of the same work split into chunks of a few MB, and the weight gradient most of all
(measured on a 2-core EPYC, 3x3 256->256 conv on 8x64x64: forward 254 -> 220 ms, weight gradient
495 -> 230 ms when run image by image). Under differentiation on CPU this convolution therefore
runs batch chunk by batch chunk: forward, input gradient and weight gradient (summed over
chunks) are the same arithmetic as one convolution. Plain evaluation (inference, export) and
other platforms (GPU, TPU) lower one `lax.conv_general_dilated`.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

# Input bytes per chunk: a few MB keeps a chunk's operands in L2/L3 cache. On the 2-core EPYC
# of BENCHMARKS.md chunks of 1-8 MB train RetinaNet-R18 at 512 px equally fast (within noise)
# and 10% faster than unchunked.
CHUNK_BYTES = 4 << 20
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


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated` (same signature and values) computed in batch chunks when
  differentiated on CPU.

  Shapes as `lax.conv_general_dilated`, e.g. NHWC lhs float32 `[B,H,W,Cin]`, HWIO rhs
  `[kh,kw,Cin/groups,Cout]` -> `[B,H',W',Cout]`.
  """
  conv = functools.partial(
      lax.conv_general_dilated, window_strides=window_strides, padding=padding,
      lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count, batch_group_count=batch_group_count,
      precision=precision, preferred_element_type=preferred_element_type)
  dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  batch_axis, out_batch_axis = dn.lhs_spec[0], dn.out_spec[0]
  batch = lhs.shape[batch_axis]
  chunk = batch_chunk(batch, lhs.size // batch * lhs.dtype.itemsize if batch else 0)
  if batch_group_count != 1 or chunk == batch:
    return conv(lhs, rhs)

  def chunked(x, w):
    return jnp.concatenate(
        [conv(lax.slice_in_dim(x, i, i + chunk, axis=batch_axis), w)
         for i in range(0, batch, chunk)], axis=out_batch_axis)

  def train_conv(x, w):
    return lax.platform_dependent(x, w, cpu=chunked, default=conv)

  # custom_vjp so that only differentiated code (training) takes the chunked, platform-dependent
  # path; the primal below is what inference and ONNX export trace.
  @jax.custom_vjp
  def f(x, w):
    return conv(x, w)

  def fwd(x, w):
    return train_conv(x, w), (x, w)

  def bwd(res, g):
    # The transpose of each chunk's conv needs only its inputs, so XLA drops the recomputed
    # forward here.
    return jax.vjp(train_conv, *res)[1](g)

  f.defvjp(fwd, bwd)
  return f(lhs, rhs)


class Conv(nn.Conv):
  """`flax.linen.Conv` (same parameters and outputs) using `conv_general_dilated` above."""
  conv_general_dilated: Any = conv_general_dilated
