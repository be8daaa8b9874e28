"""RoIPool (Fast R-CNN) on NHWC features, equal to `torchvision.ops.roi_pool`, static shapes.

Each box is rounded to feature cells (C `round`: half away from zero), split into
pooled_h x pooled_w bins of floor/ceil cell ranges, and each bin takes the max of its cells
(0 for an empty bin). The max over a cell rectangle is answered from a 2-D sparse table
(max over [h, h + 2^i) x [w, w + 2^j) for every i, j): four gathers per bin whatever the bin's
size, so the cost does not depend on the boxes and nothing is data-dependent in shape.
"""

import functools

import jax
import jax.numpy as jnp

from jaxdet.ops.roi_align import check_roi_inputs


def _c_round(x):
  """C's round(): half away from zero (jnp.round rounds half to even)."""
  return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def _sparse_table(features, axis: int):
  """[L, ...] with entry l = max over windows [i, i + 2^l) along `axis` (-inf past the end)."""
  size = features.shape[axis]
  levels = [features]
  step = 1
  while 2 * step <= size:
    prev = levels[-1]
    shifted = jnp.concatenate(
        [jax.lax.slice_in_dim(prev, step, size, axis=axis),
         jnp.full_like(jax.lax.slice_in_dim(prev, 0, step, axis=axis), -jnp.inf)], axis=axis)
    levels.append(jnp.maximum(prev, shifted))
    step *= 2
  return jnp.stack(levels)


def _bins(start, length, out: int, size: int):
  """Cell ranges [lo, hi) of every bin: int32 [B,K,out] each, clipped to [0, size]."""
  # A true division: XLA turns division by a constant into a multiplication by its reciprocal,
  # whose last-bit difference moves ceil() by a cell (torchvision divides).
  divisor = jax.lax.optimization_barrier(jnp.full(length.shape, out, jnp.float32))
  bin_size = (length.astype(jnp.float32) / divisor)[..., None]
  index = jnp.arange(out, dtype=jnp.float32)
  lo = jnp.floor(index * bin_size).astype(jnp.int32) + start[..., None]
  hi = jnp.ceil((index + 1) * bin_size).astype(jnp.int32) + start[..., None]
  return jnp.clip(lo, 0, size), jnp.clip(hi, 0, size)


def _query(lo, hi, num_levels: int):
  """Sparse-table level and the two window starts covering [lo, hi) (hi > lo)."""
  length = jnp.maximum(hi - lo, 1)
  level = jnp.sum(length[..., None] >= (2 ** jnp.arange(num_levels)), -1) - 1
  return level, lo, jnp.maximum(hi - 2 ** level, lo)


def roi_pool(features: jnp.ndarray, boxes_xyxy: jnp.ndarray, *, output_size,
             spatial_scale: float = 1.0) -> jnp.ndarray:
  """RoIPool (max pooling of box bins), the same numbers as `torchvision.ops.roi_pool`.

  Args:
    features: float [B, H, W, C] feature map (NHWC).
    boxes_xyxy: float [B, K, 4] boxes per image in input coordinates (times `spatial_scale` gives
      feature cells). Padding boxes are fine (mask their outputs); a box with a non-finite
      coordinate gives zeros.
    output_size: int or (pooled_h, pooled_w).
    spatial_scale: feature size / input size, e.g. 1/16 for stride 16.

  Returns:
    [B, K, pooled_h, pooled_w, C] pooled features, dtype of `features`. Gradients flow to
    `features` only (to the max cells of each bin).
  """
  features, boxes_xyxy, output_size = check_roi_inputs(features, boxes_xyxy, output_size)
  return _roi_pool(features, boxes_xyxy, output_size=output_size,
                   spatial_scale=float(spatial_scale))


@functools.partial(jax.jit, static_argnames=("output_size", "spatial_scale"))
def _roi_pool(features, boxes_xyxy, *, output_size, spatial_scale):
  out_h, out_w = output_size
  b, h, w, c = features.shape
  boxes = jax.lax.stop_gradient(boxes_xyxy).astype(jnp.float32)
  finite = jnp.all(jnp.isfinite(boxes), -1)
  boxes = jnp.where(finite[..., None], boxes, 0.0)
  # Cells as torchvision's kernel computes them (float32 product, then C round); huge
  # coordinates are clipped first so that the int32 cast stays defined.
  x1, y1, x2, y2 = (_c_round(jnp.clip(boxes[..., i] * jnp.float32(spatial_scale), -2e9, 2e9)
                              ).astype(jnp.int32) for i in range(4))
  h_lo, h_hi = _bins(y1, jnp.maximum(y2 - y1 + 1, 1), out_h, h)  # [B,K,oh]
  w_lo, w_hi = _bins(x1, jnp.maximum(x2 - x1 + 1, 1), out_w, w)  # [B,K,ow]
  table = _sparse_table(_sparse_table(features, 1), 3)  # [LW, LH, B, H, W, C]
  num_lw, num_lh = table.shape[:2]
  level_h, r1, r2 = _query(h_lo, h_hi, num_lh)
  level_w, c1, c2 = _query(w_lo, w_hi, num_lw)
  flat = table.reshape(-1, c)
  image = jnp.arange(b)[:, None, None, None]

  def gather(rows, cols):
    index = ((((level_w[..., None, :] * num_lh + level_h[..., :, None]) * b + image) * h
              + rows[..., :, None]) * w + cols[..., None, :])
    return flat[jnp.clip(index, 0, flat.shape[0] - 1)]  # [B,K,oh,ow,C]

  pooled = jnp.maximum(jnp.maximum(gather(r1, c1), gather(r1, c2)),
                       jnp.maximum(gather(r2, c1), gather(r2, c2)))
  empty = (h_hi <= h_lo)[..., :, None] | (w_hi <= w_lo)[..., None, :]
  pooled = jnp.where(empty[..., None], 0, pooled)
  return jnp.where(finite[..., None, None, None], pooled, 0).astype(features.dtype)
