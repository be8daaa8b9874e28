"""RoIAlign on NHWC features, equal to `torchvision.ops.roi_align` (forward) with static shapes.

Bilinear sampling is separable: with `grid_h` samples per bin along y, each output bin is
  out[ph, pw, c] = sum_{h, w} Ay[ph, h] Ax[pw, w] F[h, w, c],
where Ay[ph, :] holds each sample's two bilinear row weights divided by grid_h (Ax likewise). Each
row of Ay is stored as a few "taps" (row index, weight); the output is then a sum of
taps_y x taps_x gathers of C-vectors, which XLA fuses into one loop (no [.., taps, C] buffer).

Static shapes for torchvision's data-dependent sample count (`sampling_ratio <= 0`, grid =
ceil(roi_size / output_size) per RoI): all samples up to `_MAX_ENUMERATED` per bin are enumerated
with a mask, and the taps of a bin are merged into `span` consecutive rows. A `lax.switch` then
runs the cheapest static tap count that covers the largest span of the call, and an exact dense
path (full Ay/Ax matrices, at most H + 4 in-map samples per bin enumerated) covers everything
else, so the result equals torchvision for every box. Under `jax.vmap` a switch runs all its
branches: pass the batch as the leading dimension instead of vmapping.
"""

import functools

import jax
import jax.numpy as jnp

# Merged tap counts tried in order for sampling_ratio <= 0; larger spans use the dense path.
_MERGED_TAPS = (2, 3, 4, 6, 9)
_MAX_ENUMERATED = max(_MERGED_TAPS) - 1
# Unmerged taps (2 per sample) above this count go to the dense path for sampling_ratio > 0.
_MAX_UNMERGED_TAPS = 8
# Taps x taps gathers are unrolled (fused) up to this; beyond it a scan over y taps.
_MAX_UNROLLED = 6
# Cap on the sample count of absurdly large boxes (int32 safety); the dense path enumerates only
# in-map samples, so the cap never changes a result.
_GRID_CAP = 2 ** 30


def _pair(size) -> tuple[int, int]:
  if isinstance(size, int):
    return size, size
  h, w = size
  return int(h), int(w)


class _Axis:
  """Per-axis RoI geometry: start [B,K], bin size [B,K], samples per bin [B,K] int32, size."""

  def __init__(self, start, length, out, sampling_ratio, size, aligned):
    if not aligned:
      length = jnp.maximum(length, 1.0)
    self.start, self.out, self.size = start, out, size
    self.bin = length / out
    if sampling_ratio > 0:
      self.grid = jnp.full(start.shape, sampling_ratio, jnp.int32)
    else:
      grid = jnp.ceil(length / out)
      self.grid = jnp.minimum(grid, _GRID_CAP).astype(jnp.int32)
    self.norm = 1.0 / jnp.maximum(self.grid, 1).astype(start.dtype)

  def samples(self, first, count):
    """Bilinear terms of samples first + [0, count) of every bin: [B,K,out,count] each."""
    bin_start = self.start[..., None] + jnp.arange(self.out, dtype=self.start.dtype) * self.bin[..., None]
    index = first + jnp.arange(count)  # first: [B,K,out,1] or 0
    # max(grid, 1): a zero-size aligned box has grid 0 and no samples (and must not divide by 0).
    grid = jnp.maximum(self.grid, 1)[..., None, None].astype(self.start.dtype)
    # Same operation order as torchvision's kernel so the floors agree.
    pos = bin_start[..., None] + (index + 0.5).astype(self.start.dtype) * self.bin[..., None, None] / grid
    valid = (index < self.grid[..., None, None]) & (pos >= -1.0) & (pos <= self.size)
    # Valid samples lie in [-1, size]; the others get position 0 so their (zero-weight) indices
    # stay in bounds.
    pos = jnp.where(valid, jnp.clip(pos, 0.0, self.size), 0.0)
    low = jnp.floor(pos).astype(jnp.int32)
    at_end = low >= self.size - 1
    low = jnp.where(at_end, self.size - 1, low)
    high = jnp.where(at_end, self.size - 1, low + 1)
    frac = jnp.where(at_end, 0.0, pos - low.astype(pos.dtype))
    scale = jnp.where(valid, self.norm[..., None, None], 0.0)
    return low, high, (1.0 - frac) * scale, frac * scale, valid


def _unmerged_taps(axis: _Axis, count: int):
  low, high, w_low, w_high, _ = axis.samples(0, count)
  return jnp.concatenate([low, high], -1), jnp.concatenate([w_low, w_high], -1)


def _merged_samples(axis: _Axis):
  """Samples of every bin (up to _MAX_ENUMERATED) and the first row / span of their taps."""
  low, high, w_low, w_high, valid = axis.samples(0, _MAX_ENUMERATED)
  first = jnp.min(jnp.where(valid, low, axis.size), -1, keepdims=True)
  first = jnp.where(first == axis.size, 0, first)
  last = jnp.max(jnp.where(valid, high, 0), -1, keepdims=True)
  span = jnp.max(jnp.where(jnp.any(valid, -1, keepdims=True), last - first + 1, 0))
  fits = jnp.all(axis.grid <= _MAX_ENUMERATED)
  return (first, low - first, high - first, w_low, w_high), span, fits


def _merge(merged_samples, num_taps: int, size: int):
  first, off_low, off_high, w_low, w_high = merged_samples
  taps = jnp.arange(num_taps)
  weights = (jnp.sum(w_low[..., None] * (off_low[..., None] == taps), -2)
             + jnp.sum(w_high[..., None] * (off_high[..., None] == taps), -2))
  return jnp.minimum(first + taps, size - 1), weights


def _dense_matrix(axis: _Axis, first, count: int):
  """Ay [B,K,out,size]: sum of every (enumerated) sample's two bilinear weights."""
  low, high, w_low, w_high, _ = axis.samples(first, count)
  rows = jnp.arange(axis.size)
  return (jnp.sum(w_low[..., None] * (low[..., None] == rows), -2)
          + jnp.sum(w_high[..., None] * (high[..., None] == rows), -2))


def _first_in_map_sample(axis: _Axis):
  """Index of the first sample at or after -1 (minus one for float safety), [B,K,out,1]."""
  bin_start = axis.start[..., None] + jnp.arange(axis.out, dtype=axis.start.dtype) * axis.bin[..., None]
  step = axis.bin[..., None] / jnp.maximum(axis.grid, 1)[..., None].astype(axis.start.dtype)
  first = jnp.ceil((-1.0 - bin_start) / jnp.maximum(step, 1e-30) - 0.5) - 1
  return jnp.clip(first, 0, _GRID_CAP).astype(jnp.int32)[..., None]


def _gather_taps(features, rows, w_rows, cols, w_cols):
  """sum_{p,q} w_rows[..,ph,p] w_cols[..,pw,q] F[b, rows[..,ph,p], cols[..,pw,q]] -> [B,K,oh,ow,C]."""
  b, h, w, c = features.shape
  flat = features.reshape(b * h * w, c)
  row_index = rows * w + (jnp.arange(b) * h * w)[:, None, None, None]  # [B,K,oh,P]
  num_p, num_q = rows.shape[-1], cols.shape[-1]
  w_rows = w_rows.astype(features.dtype)
  w_cols = w_cols.astype(features.dtype)

  def one_row_tap(p):
    # [B,K,oh,1] + [B,K,1,ow] -> gathers of [B,K,oh,ow,C], unrolled over column taps so that XLA
    # fuses them with the weighted sum.
    acc = 0.0
    for q in range(num_q):
      index = row_index[..., p][..., :, None] + cols[..., q][..., None, :]
      pixels = flat.at[index].get(mode="promise_in_bounds")
      acc = acc + w_cols[..., q][..., None, :, None] * pixels
    return w_rows[..., p][..., :, None, None] * acc

  if num_p <= _MAX_UNROLLED:
    return sum(one_row_tap(p) for p in range(num_p))

  def body(acc, p):
    return acc + one_row_tap(p), None

  out_shape = rows.shape[:3] + cols.shape[2:3] + (c,)
  acc, _ = jax.lax.scan(body, jnp.zeros(out_shape, features.dtype), jnp.arange(num_p))
  return acc


def _dense(features, a_y, a_x):
  t = jnp.einsum("bkyh,bhwc->bkywc", a_y.astype(features.dtype), features)
  return jnp.einsum("bkywc,bkxw->bkyxc", t, a_x.astype(features.dtype))


def roi_align(features: jnp.ndarray, boxes_xyxy: jnp.ndarray, *, output_size,
              spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False) -> jnp.ndarray:
  """RoIAlign (Mask R-CNN), same numbers as `torchvision.ops.roi_align` on NCHW features.

  Box coordinates are scaled by `spatial_scale` (and shifted by -0.5 when `aligned`), each box is
  split into output_size bins, and each bin averages grid_h x grid_w bilinear samples, where
  grid = sampling_ratio, or ceil(roi_size / output_size) when sampling_ratio <= 0 (adaptive, the
  torchvision default). Samples beyond one pixel outside the map count as 0. Boxes with a
  non-finite coordinate give zeros. Gradients flow to `features` (and to the boxes' continuous
  part, which torchvision does not provide).

  Args:
    features: float [B, H, W, C] feature map (NHWC).
    boxes_xyxy: float [B, K, 4] boxes per image, in input coordinates (multiplied by
      `spatial_scale` to reach feature coordinates). Padding boxes are fine; mask their outputs.
    output_size: int or (out_h, out_w).
    spatial_scale: feature size / input size, e.g. 1/8 for stride 8.
    sampling_ratio: samples per bin along each axis; <= 0 for torchvision's adaptive count.
    aligned: shift boxes by -0.5 pixel (pixel-centre model, Detectron2 `ROIAlignV2`).

  Returns:
    [B, K, out_h, out_w, C] pooled features, dtype of `features`.
  """
  output_size = _pair(output_size)
  if features.ndim != 4:
    raise ValueError(f"features must be [B, H, W, C], got shape {features.shape}")
  if boxes_xyxy.ndim != 3 or boxes_xyxy.shape[-1] != 4 or boxes_xyxy.shape[0] != features.shape[0]:
    raise ValueError(f"boxes_xyxy must be [B, K, 4] with B = {features.shape[0]}, got shape "
                     f"{boxes_xyxy.shape}")
  if min(output_size) < 1:
    raise ValueError(f"output_size must be positive, got {output_size}")
  if 0 in features.shape[1:3]:
    raise ValueError(f"features must have a non-empty map, got shape {features.shape}")
  return _roi_align(features, boxes_xyxy, output_size=output_size,
                    spatial_scale=float(spatial_scale), sampling_ratio=int(sampling_ratio),
                    aligned=bool(aligned))


@functools.partial(jax.jit, static_argnames=("output_size", "spatial_scale", "sampling_ratio",
                                             "aligned"))
def _roi_align(features, boxes_xyxy, *, output_size, spatial_scale, sampling_ratio, aligned):
  out_h, out_w = output_size
  _, h, w, _ = features.shape
  dtype = jnp.promote_types(features.dtype, jnp.float32)
  finite = jnp.all(jnp.isfinite(boxes_xyxy), -1)
  boxes = jnp.where(finite[..., None], boxes_xyxy, 0.0).astype(dtype)
  offset = 0.5 if aligned else 0.0
  x1, y1, x2, y2 = (boxes[..., i] * spatial_scale - offset for i in range(4))
  ay = _Axis(y1, y2 - y1, out_h, sampling_ratio, h, aligned)
  ax = _Axis(x1, x2 - x1, out_w, sampling_ratio, w, aligned)

  if sampling_ratio > 0:
    if 2 * sampling_ratio <= _MAX_UNMERGED_TAPS:
      out = _gather_taps(features, *_unmerged_taps(ay, sampling_ratio),
                         *_unmerged_taps(ax, sampling_ratio))
    else:
      out = _dense(features, _dense_matrix(ay, 0, sampling_ratio),
                   _dense_matrix(ax, 0, sampling_ratio))
  else:
    merged_y, span_y, fits_y = _merged_samples(ay)
    merged_x, span_x, fits_x = _merged_samples(ax)
    span = jnp.maximum(span_y, span_x)
    fits = fits_y & fits_x

    def merged_branch(num_taps):
      return lambda: _gather_taps(features, *_merge(merged_y, num_taps, h),
                                  *_merge(merged_x, num_taps, w))

    def dense_branch():
      return _dense(features, _dense_matrix(ay, _first_in_map_sample(ay), h + 4),
                    _dense_matrix(ax, _first_in_map_sample(ax), w + 4))

    # Smallest tap count covering the largest span; the dense path when none does.
    taps = jnp.asarray(_MERGED_TAPS)
    choice = jnp.where(fits, jnp.sum(taps < span), len(_MERGED_TAPS))
    out = jax.lax.switch(choice, [merged_branch(n) for n in _MERGED_TAPS] + [dense_branch])
  return jnp.where(finite[..., None, None, None], out, 0).astype(features.dtype)
