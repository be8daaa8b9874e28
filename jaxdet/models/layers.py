"""Shared building blocks (Flax Linen, NHWC).

Every layer that holds BatchNorm takes `train` so statistics update only in training; with
`frozen_bn=True` BatchNorm always runs in inference mode (the trainer excludes its params from
training by path, see `jaxdet.models.frozen_param_patterns`).
"""

import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxdet.models.conv import Conv, check_cpu_train_kernels

# PyTorch-like BatchNorm: momentum 0.9 on running stats (torch 0.1), eps 1e-5.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def conv_padding(kernel_size):
  """Symmetric `k // 2` padding as in PyTorch (Flax "SAME" pads asymmetrically when strided)."""
  p = kernel_size // 2
  return ((p, p), (p, p))


class ConvBN(nn.Module):
  """Conv (no bias) -> BatchNorm -> activation.

  Attributes:
    features: output channels.
    kernel_size: square kernel size (odd).
    strides: square stride.
    act: activation or None.
    frozen_bn: BatchNorm always in inference mode.
    groups: feature groups of the conv.
    cpu_train_kernels: "auto" or "off", passed to `Conv`.
    epsilon: BatchNorm epsilon (1e-5 as torch; torchvision's GoogLeNet uses 1e-3).
    dilation: square kernel dilation; the padding grows with it (`dilation * (k // 2)`, as
      torchvision's dilated ResNet).
  """
  features: int
  kernel_size: int = 3
  strides: int = 1
  act: Callable | None = nn.silu
  frozen_bn: bool = False
  groups: int = 1
  cpu_train_kernels: str = "auto"
  epsilon: float = BN_EPSILON
  dilation: int = 1

  @nn.compact
  def __call__(self, x, *, train):
    """x: float32 `[B, H, W, Cin]` -> float32 `[B, H/s, W/s, features]`."""
    k, d = self.kernel_size, self.dilation
    pad = d * (k // 2)
    x = Conv(self.features, (k, k), strides=(self.strides, self.strides),
             padding=((pad, pad), (pad, pad)), kernel_dilation=(d, d), use_bias=False,
             feature_group_count=self.groups,
             cpu_train_kernels=self.cpu_train_kernels, name="conv")(x)
    x = nn.BatchNorm(use_running_average=(not train) or self.frozen_bn, momentum=BN_MOMENTUM,
                     epsilon=self.epsilon, name="bn")(x)
    return x if self.act is None else self.act(x)


def _ceil_extra(size, window, stride, padding):
  """Extra bottom/right padding that turns a floor-mode pool into PyTorch's `ceil_mode=True`
  (one more window when the last one starts inside the input or its left padding)."""
  out = -(-(size + 2 * padding - window) // stride) + 1
  if (out - 1) * stride >= size + padding:
    out -= 1
  return max(0, (out - 1) * stride + window - (size + 2 * padding))


def max_pool(x, *, window, stride, padding, ceil_mode=False, cpu_train_kernels="auto"):
  """Max-pool, padded with -inf, in the form jax2onnx exports (keyword window, VALID).

  Args:
    x: float32 `[B, H, W, C]`.
    window: square window size.
    stride: square stride.
    padding: symmetric padding on each side.
    ceil_mode: output size rounded up as PyTorch `ceil_mode=True` (torchvision GoogLeNet).
    cpu_train_kernels: "auto" (default): when differentiated on CPU, the gradient is the masked
      strided sum of `_max_pool_cpu_tangent` instead of XLA's select-and-scatter; "off": plain
      `nn.max_pool` and its XLA gradient everywhere. Same values and gradients either way; both
      support reverse and forward mode.

  Returns:
    float32 `[B, H', W', C]`.
  """
  check_cpu_train_kernels(cpu_train_kernels)
  extra_h = _ceil_extra(x.shape[1], window, stride, padding) if ceil_mode else 0
  extra_w = _ceil_extra(x.shape[2], window, stride, padding) if ceil_mode else 0
  if padding or extra_h or extra_w:
    # Explicit -inf padding: jax2onnx 0.17 drops nn.max_pool's explicit `padding` pairs.
    pad = ((0, 0), (padding, padding + extra_h), (padding, padding + extra_w), (0, 0))
    x = jnp.pad(x, pad, constant_values=-jnp.inf)
  if cpu_train_kernels == "off":
    return _plain_max_pool(x, window, stride)
  return _max_pool_valid(x, window, stride)


def _adaptive_matrix(size, out):
  """`[out, size]` averaging weights of PyTorch's adaptive pooling: output i averages inputs
  floor(i*size/out) .. ceil((i+1)*size/out)-1."""
  m = np.zeros((out, size), np.float32)
  for i in range(out):
    start, end = (i * size) // out, -(-((i + 1) * size) // out)
    m[i, start:end] = 1.0 / (end - start)
  return m


def adaptive_avg_pool(x, output_size):
  """PyTorch `adaptive_avg_pool2d` on NHWC.

  Args:
    x: float32 `[B, H, W, C]`.
    output_size: int or (h, w).

  Returns:
    float32 `[B, h, w, C]`.
  """
  oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
  b, h, w, c = x.shape
  if (oh, ow) == (1, 1):
    return jnp.mean(x, axis=(1, 2), keepdims=True)
  if h % oh == 0 and w % ow == 0:
    return jnp.mean(x.reshape(b, oh, h // oh, ow, w // ow, c), axis=(2, 4))
  # General case (e.g. a 2x2 map pooled to 7x7): two small exact averaging matmuls.
  hi = lax.Precision.HIGHEST
  x = jnp.einsum("oh,bhwc->bowc", _adaptive_matrix(h, oh), x, precision=hi)
  return jnp.einsum("pw,bowc->bopc", _adaptive_matrix(w, ow), x, precision=hi)


def _plain_max_pool(x, window, stride):
  """VALID max-pool `[B,H,W,C] -> [B,H',W',C]`."""
  return nn.max_pool(x, window_shape=(window, window), strides=(stride, stride), padding="VALID")


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _max_pool_valid(x, window, stride):
  """VALID max-pool `[B,H,W,C] -> [B,H',W',C]` whose derivative on CPU avoids XLA's
  select-and-scatter (which XLA:CPU runs as iota + argmax reduce-window + scatter: about 0.3 s a
  step for the ResNet stem pool at 512 px, batch 8); other platforms keep XLA's."""
  return _plain_max_pool(x, window, stride)


def _max_pool_cpu_tangent(x, y, tx, window, stride):
  """Tangent of the max-pool: per window, the tangent of its first maximum in row-major order
  (as XLA's select-and-scatter). Linear in `tx`: strided slices and masks, so its transpose (the
  gradient) is interior-padded adds, with no scatter."""
  b, _, _, c = x.shape
  _, ho, wo, _ = y.shape
  taken = jnp.zeros(y.shape, bool)
  ty = jnp.zeros(y.shape, tx.dtype)
  for dy in range(window):
    for dxo in range(window):
      # The input pixel at offset (dy, dxo) of every window, [B,H',W',C].
      pick = lambda a: lax.slice(a, (0, dy, dxo, 0),
                                 (b, dy + stride * (ho - 1) + 1, dxo + stride * (wo - 1) + 1, c),
                                 (1, stride, stride, 1))
      hit = (pick(x) == y) & ~taken
      taken = taken | hit
      ty = ty + jnp.where(hit, pick(tx), jnp.zeros((), tx.dtype))
  return ty


@_max_pool_valid.defjvp
def _max_pool_jvp(window, stride, primals, tangents):
  (x,), (tx,) = primals, tangents
  y = _plain_max_pool(x, window, stride)
  xla_tangent = lambda x, y, tx: jax.jvp(lambda a: _plain_max_pool(a, window, stride), (x,),
                                         (tx,))[1]
  ty = lax.platform_dependent(
      x, y, tx, cpu=lambda x, y, tx: _max_pool_cpu_tangent(x, y, tx, window, stride),
      default=xla_tangent)
  return y, ty


def upsample_nearest(x, *, factor=2):
  """Nearest upsampling by repetition (exports with a dynamic batch, unlike jax.image.resize).

  Args:
    x: `[B, H, W, C]`.
    factor: integer scale.

  Returns:
    `[B, H*factor, W*factor, C]`.
  """
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def _bilinear_matrix(size, out):
  """`[out, size]` weights of PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`
  along one axis: source `(i + 0.5) * size / out - 0.5`, clamped at 0, between two neighbours."""
  m = np.zeros((out, size), np.float32)
  for i in range(out):
    src = max((i + 0.5) * size / out - 0.5, 0.0)
    i0 = min(int(np.floor(src)), size - 1)
    i1 = min(i0 + 1, size - 1)
    lam = src - i0
    m[i, i0] += 1.0 - lam
    m[i, i1] += lam
  return m


def resize_bilinear(x, size):
  """PyTorch `F.interpolate(x, size, mode="bilinear", align_corners=False)` on NHWC (no
  antialiasing), as two constant matmuls: exact, any batch size, and exported to ONNX as such.

  Args:
    x: float32 `[B, H, W, C]`.
    size: (h, w) of the output.

  Returns:
    float32 `[B, h, w, C]`.
  """
  h, w = int(size[0]), int(size[1])
  if (h, w) == tuple(x.shape[1:3]):
    return x
  hi = lax.Precision.HIGHEST
  x = jnp.einsum("oh,bhwc->bowc", _bilinear_matrix(x.shape[1], h), x, precision=hi)
  return jnp.einsum("pw,bowc->bopc", _bilinear_matrix(x.shape[2], w), x, precision=hi)
