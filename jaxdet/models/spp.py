"""Spatial pyramid pooling: SPPNet's fixed-length pyramid and the YOLO-style SPP block.

`spatial_pyramid_pool` (He et al. 2014): max-pool a map of any size into n x n bins for each
pyramid level and concatenate, a fixed-length vector for any input size. Bins are PyTorch's
`adaptive_max_pool2d` ranges, floor(i * H / n) .. ceil((i + 1) * H / n).
`spp_block` (YOLOv3-SPP / YOLOv4): the input concatenated with stride-1 "same" max-pools of a few
kernel sizes, keeping the spatial size.
"""

from collections.abc import Sequence

import jax.numpy as jnp

from jaxdet.models.layers import max_pool


def _bin_ranges(size: int, n: int):
  return [((i * size) // n, -(-((i + 1) * size) // n)) for i in range(n)]


def adaptive_max_pool(x: jnp.ndarray, output_size: int) -> jnp.ndarray:
  """PyTorch `adaptive_max_pool2d` on NHWC: float [B, H, W, C] -> [B, n, n, C]."""
  rows = []
  for y0, y1 in _bin_ranges(x.shape[1], output_size):
    band = jnp.max(x[:, y0:y1], axis=1)  # [B, W, C]
    rows.append(jnp.stack([jnp.max(band[:, x0:x1], axis=1)
                           for x0, x1 in _bin_ranges(x.shape[2], output_size)], axis=1))
  return jnp.stack(rows, axis=1)


def spatial_pyramid_pool(x: jnp.ndarray, levels: Sequence[int] = (1, 2, 4)) -> jnp.ndarray:
  """SPPNet's pyramid pooling: a fixed-length vector for any map size.

  Args:
    x: float [B, H, W, C] (H, W >= 1; static).
    levels: bins per side of each pyramid level, e.g. (1, 2, 4) -> 21 bins.

  Returns:
    float [B, C * sum(n * n for n in levels)]: the levels in order, each flattened
    row-major over (bin y, bin x, channel) (NHWC order).
  """
  if x.ndim != 4:
    raise ValueError(f"x must be [B, H, W, C], got shape {x.shape}")
  if not levels or any(int(n) < 1 for n in levels):
    raise ValueError(f"levels must be positive bin counts, got {tuple(levels)}")
  b = x.shape[0]
  return jnp.concatenate([adaptive_max_pool(x, int(n)).reshape(b, -1) for n in levels], axis=-1)


def spp_block(x: jnp.ndarray, kernel_sizes: Sequence[int] = (5, 9, 13)) -> jnp.ndarray:
  """YOLO's SPP block: concat([x, maxpool_k(x) for k]) with stride 1 and k // 2 padding.

  Args:
    x: float [B, H, W, C].
    kernel_sizes: odd pool sizes.

  Returns:
    float [B, H, W, C * (1 + len(kernel_sizes))].
  """
  if any(k % 2 == 0 or k < 1 for k in kernel_sizes):
    raise ValueError(f"kernel_sizes must be odd and positive, got {tuple(kernel_sizes)}")
  return jnp.concatenate(
      [x] + [max_pool(x, window=k, stride=1, padding=k // 2) for k in kernel_sizes], axis=-1)
