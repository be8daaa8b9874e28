"""RoIAlign on NHWC features, equal to `torchvision.ops.roi_align` with static shapes.

Bilinear sampling is separable: with `grid_h` samples per bin along y, each output bin is
  out[ph, pw, c] = sum_{h, w} Ay[ph, h] Ax[pw, w] F[h, w, c],
where Ay[ph, :] sums each sample's two bilinear row weights divided by grid_h (Ax likewise). Each
row of Ay is stored as "taps" (row index, weight) and the output is a sum over tap pairs of
gathered C-vectors. A loop runs over the row taps actually used by the call (data-dependent trip
count, static shapes); each step gathers 4 x 4 tap pairs in one fused XLA kernel.

Static shapes for the data-dependent sample count of `sampling_ratio <= 0` (torchvision's
adaptive grid = ceil(roi_size / output_size) per RoI): up to `_MAX_TAPS - 1` samples per bin are
enumerated with a mask (only `_SHORT_ENUMERATION` when every grid of the call is that small) and
merged into consecutive row taps. A RoI with a larger grid or a span of more than `_MAX_TAPS` rows
in a bin ("big") is computed exactly by a dense path instead (full Ay/Ax matrices built from the
at most H + 4 in-map samples of each bin; two matmuls): per RoI for up to `_MAX_BIG` big RoIs, and
for every RoI of the call beyond that. So the result equals torchvision for every box. With
`sampling_ratio > 0` the 2 * sampling_ratio unmerged taps (or fewer merged ones) are always exact.

The backward pass is a custom VJP (scatter-add of the same taps): gradients flow to `features`;
as in torchvision, none flow to the boxes.
"""

import functools
import math

import jax
import jax.numpy as jnp

# Merged taps per bin and axis before the dense path takes over (sampling_ratio <= 0).
_MAX_TAPS = 28
# RoIs per call that the taps cannot represent (sampling_ratio <= 0) handled by a per-RoI dense
# path; more than this sends the whole call to the dense path.
_MAX_BIG = 8
# Samples enumerated per bin when every grid of the call is at most this (sampling_ratio <= 0).
_SHORT_ENUMERATION = 4
# Row x column taps gathered per loop step, fused into one XLA kernel: spans up to 4 (most boxes
# with sampling_ratio 2 or adaptive) take a single step.
_BLOCK = 4
# Cap on the sample count of absurdly large boxes (int32 safety); the dense path enumerates only
# in-map samples, so the cap never changes a result.
_GRID_CAP = 2 ** 30


def _pair(size) -> tuple[int, int]:
  if isinstance(size, int):
    return size, size
  h, w = size
  return int(h), int(w)


class _Axis:
  """Per-axis RoI geometry: start, bin size and samples per bin [B,K]; static out and size."""

  def __init__(self, start, bin_size, grid, out: int, size: int):
    self.start, self.bin, self.grid, self.out, self.size = start, bin_size, grid, out, size

  @classmethod
  def from_box(cls, start, length, *, out, sampling_ratio, size, aligned):
    if not aligned:
      length = jnp.maximum(length, 1.0)
    if sampling_ratio > 0:
      grid = jnp.full(start.shape, sampling_ratio, jnp.int32)
    else:
      grid = jnp.minimum(jnp.ceil(length / out), _GRID_CAP).astype(jnp.int32)
    return cls(start, length / out, grid, out, size)

  def arrays(self):
    return self.start, self.bin, self.grid

  def samples(self, first, count: int):
    """Bilinear terms of samples first + [0, count) of every bin: [B,K,out,count] each."""
    dtype = self.start.dtype
    bin_start = self.start[..., None] + jnp.arange(self.out, dtype=dtype) * self.bin[..., None]
    index = first + jnp.arange(count)  # first: [B,K,out,1] or 0
    # max(grid, 1): a zero-size aligned box has grid 0 and no samples (and must not divide by 0).
    grid = jnp.maximum(self.grid, 1)[..., None, None].astype(dtype)
    # Same operation order as torchvision's kernel so that the floors agree.
    pos = bin_start[..., None] + (index + 0.5).astype(dtype) * self.bin[..., None, None] / grid
    valid = (index < self.grid[..., None, None]) & (pos >= -1.0) & (pos <= self.size)
    # Valid samples lie in [-1, size]; the others get position 0 to keep indices in bounds.
    pos = jnp.where(valid, jnp.clip(pos, 0.0, self.size), 0.0)
    low = jnp.floor(pos).astype(jnp.int32)
    at_end = low >= self.size - 1
    low = jnp.where(at_end, self.size - 1, low)
    high = jnp.where(at_end, self.size - 1, low + 1)
    frac = jnp.where(at_end, 0.0, pos - low.astype(dtype))
    scale = jnp.where(valid, 1.0 / grid, 0.0)
    return low, high, (1.0 - frac) * scale, frac * scale, valid


def _histogram(bins, values, num_bins: int):
  """sum of values per bin along the last axis: [..., S] x [..., S] -> [..., num_bins].

  Bins outside [0, num_bins) are dropped. A flat scatter-add: much faster on CPU than a one-hot
  [..., S, num_bins] reduction.
  """
  lead = bins.shape[:-1]
  rows = jnp.arange(math.prod(lead)).reshape(lead + (1,))
  inside = (bins >= 0) & (bins < num_bins)
  flat = rows * num_bins + jnp.clip(bins, 0, num_bins - 1)
  total = jnp.zeros((rows.size * num_bins,), values.dtype)
  total = total.at[flat.reshape(-1)].add(jnp.where(inside, values, 0).reshape(-1))
  return total.reshape(lead + (num_bins,))


def _unmerged_taps(axis: _Axis, count: int):
  low, high, w_low, w_high, _ = axis.samples(0, count)
  return jnp.concatenate([low, high], -1), jnp.concatenate([w_low, w_high], -1)


def _merged_taps(axis: _Axis, count: int, num_taps: int):
  """Samples 0..count-1 of every bin merged into num_taps consecutive rows from the first one.

  Returns rows int32 [B,K,out,num_taps], weights [B,K,out,num_taps] and each RoI's largest span
  (rows from first to last used) over its bins, int32 [B,K]. Exact where span <= num_taps.
  """
  low, high, w_low, w_high, valid = axis.samples(0, count)
  first = jnp.min(jnp.where(valid, low, axis.size), -1, keepdims=True)
  first = jnp.where(first == axis.size, 0, first)
  last = jnp.max(jnp.where(valid, high, -1), -1, keepdims=True)
  span = jnp.max(jnp.maximum(last - first + 1, 0), axis=(-2, -1))
  weights = _histogram(jnp.concatenate([low - first, high - first], -1),
                       jnp.concatenate([w_low, w_high], -1), num_taps)
  return jnp.minimum(first + jnp.arange(num_taps), axis.size - 1), weights, span


def _axis_taps(axis: _Axis, sampling_ratio: int):
  """Taps of one axis: rows, weights [B,K,out,T]; per RoI: taps in use and exactness [B,K]."""
  if sampling_ratio > 0:
    num = 2 * sampling_ratio
    rows, weights = _unmerged_taps(axis, sampling_ratio)
    m_rows, m_weights, span = _merged_taps(axis, sampling_ratio, num)
    use_merged = jnp.max(span) < num  # merged taps are fewer when the samples of a bin are close
    return (jnp.where(use_merged, m_rows, rows), jnp.where(use_merged, m_weights, weights),
            jnp.where(use_merged, span, num), jnp.ones(span.shape, bool))
  # Enumerating _MAX_TAPS - 1 samples for every bin costs more than the pooling itself when all
  # grids are small (the common case), so a cheap cond picks a short enumeration then.
  rows, weights, span = jax.lax.cond(
      jnp.max(axis.grid) <= _SHORT_ENUMERATION,
      lambda: _merged_taps(axis, _SHORT_ENUMERATION, _MAX_TAPS),
      lambda: _merged_taps(axis, _MAX_TAPS - 1, _MAX_TAPS))
  return rows, weights, span, (axis.grid <= _MAX_TAPS - 1) & (span <= _MAX_TAPS)


def _first_in_map_sample(axis: _Axis):
  """Index of the first sample at or after -1 (one less, for float safety), [B,K,out,1]."""
  dtype = axis.start.dtype
  bin_start = axis.start[..., None] + jnp.arange(axis.out, dtype=dtype) * axis.bin[..., None]
  step = axis.bin[..., None] / jnp.maximum(axis.grid, 1)[..., None].astype(dtype)
  first = jnp.ceil((-1.0 - bin_start) / jnp.maximum(step, 1e-30) - 0.5) - 1
  return jnp.clip(first, 0, _GRID_CAP).astype(jnp.int32)[..., None]


def _dense_matrix(axis: _Axis):
  """Ay [B,K,out,size]: every in-map sample's two bilinear weights, summed per row."""
  low, high, w_low, w_high, _ = axis.samples(_first_in_map_sample(axis), axis.size + 4)
  return _histogram(jnp.concatenate([low, high], -1), jnp.concatenate([w_low, w_high], -1),
                    axis.size)


def _tap_steps(taps, features_shape):
  """Loop step i -> _BLOCK x _BLOCK (flat pixel index [B,K,oh,ow], weight [B,K,oh,ow]) pairs.

  Shared by the forward gather and the backward scatter. Returns (step, number of steps).
  """
  rows, w_rows, n_rows, cols, w_cols, n_cols = taps
  b, h, w, _ = features_shape

  def pad(x):
    # Zero-weight taps at row/col 0 up to a whole number of blocks, and at least two blocks:
    # with a single block the slices below become static and XLA (CPU) then materializes each
    # gathered tap pair instead of fusing them into one kernel (measured 20x slower).
    size = max(x.shape[-1] + (-x.shape[-1] % _BLOCK), 2 * _BLOCK)
    return jnp.pad(x, [(0, 0)] * 3 + [(0, size - x.shape[-1])])

  row_index = pad(rows * w + (jnp.arange(b) * h * w)[:, None, None, None])  # [B,K,oh,T]
  w_rows, cols, w_cols = pad(w_rows), pad(cols), pad(w_cols)
  col_blocks = (n_cols + _BLOCK - 1) // _BLOCK

  def step(i):
    start_row, start_col = (i // col_blocks) * _BLOCK, (i % col_blocks) * _BLOCK
    r = jax.lax.dynamic_slice_in_dim(row_index, start_row, _BLOCK, axis=3)
    wr = jax.lax.dynamic_slice_in_dim(w_rows, start_row, _BLOCK, axis=3)
    c = jax.lax.dynamic_slice_in_dim(cols, start_col, _BLOCK, axis=3)
    wc = jax.lax.dynamic_slice_in_dim(w_cols, start_col, _BLOCK, axis=3)
    return [(r[..., :, None, p] + c[..., None, :, q], wr[..., :, None, p] * wc[..., None, :, q])
            for p in range(_BLOCK) for q in range(_BLOCK)]

  return step, ((n_rows + _BLOCK - 1) // _BLOCK) * col_blocks


def _gather_taps(features, taps):
  b, h, w, c = features.shape
  flat = features.reshape(b * h * w, c)
  step, num_steps = _tap_steps(taps, features.shape)

  def body(i, acc):
    for index, weight in step(i):
      acc = acc + weight[..., None].astype(acc.dtype) * flat.at[index].get(
          mode="promise_in_bounds")
    return acc

  out_shape = taps[0].shape[:3] + taps[3].shape[2:3] + (c,)
  return jax.lax.fori_loop(0, num_steps, body, jnp.zeros(out_shape, features.dtype))


def _scatter_taps(cotangent, taps, features_shape):
  b, h, w, c = features_shape
  step, num_steps = _tap_steps(taps, features_shape)

  def body(i, grad):
    for index, weight in step(i):
      grad = grad.at[index].add(weight[..., None].astype(grad.dtype) * cotangent,
                                mode="promise_in_bounds")
    return grad

  grad = jax.lax.fori_loop(0, num_steps, body, jnp.zeros((b * h * w, c), cotangent.dtype))
  return grad.reshape(features_shape)


def _dense_forward(features, a_y, a_x):
  t = jnp.einsum("bkyh,bhwc->bkywc", a_y.astype(features.dtype), features)
  return jnp.einsum("bkywc,bkxw->bkyxc", t, a_x.astype(features.dtype))


def _dense_backward(cotangent, a_y, a_x):
  t = jnp.einsum("bkyxc,bkxw->bkywc", cotangent, a_x.astype(cotangent.dtype))
  return jnp.einsum("bkyh,bkywc->bhwc", a_y.astype(cotangent.dtype), t)


def _make_pool(out_h: int, out_w: int, h: int, w: int, *, with_dense: bool):
  """Linear map features -> pooled with a custom VJP; the other inputs get no cotangent.

  `mode` (int32 []): 0 taps only; 1 taps plus the per-RoI dense path for the selected RoIs (whose
  tap weights are zero); 2 the dense path for every RoI.
  """

  def axes(geometry, pick=lambda a: a):
    geo_y, geo_x = geometry
    return (_Axis(*map(pick, geo_y), out_h, h), _Axis(*map(pick, geo_x), out_w, w))

  def selected_mats(batch, dtype, geometry, selection):
    """Ay per image [B,n,oh,H] (zero off the RoI's image or for unused slots), Ax [n,ow,W]."""
    index, valid = selection
    num_rois = geometry[0][0].shape[1]
    a_y, a_x = map(_dense_matrix, axes(geometry, lambda a: a.reshape(-1)[index]))
    image = (index // num_rois)[None, :] == jnp.arange(batch)[:, None]
    a_y = (image & valid)[:, :, None, None] * a_y[None]
    return a_y.astype(dtype), a_x.astype(dtype)

  def add_selected(out, features, mode, geometry, selection):
    def pooled():
      a_y, a_x = selected_mats(features.shape[0], features.dtype, geometry, selection)
      return jnp.einsum("nywc,nxw->nyxc", jnp.einsum("bnyh,bhwc->nywc", a_y, features), a_x)

    # Only the small [n, oh, ow, C] result passes through the cond (no copy of `out`).
    shape = selection[0].shape + out.shape[2:]
    pooled = jax.lax.cond(mode == 1, pooled, lambda: jnp.zeros(shape, out.dtype))
    flat = out.reshape((-1,) + out.shape[2:])
    return flat.at[selection[0]].add(pooled).reshape(-1)

  def forward(features, taps, mode, geometry, selection):
    if not with_dense:
      return _gather_taps(features, taps)

    def with_taps():
      return add_selected(_gather_taps(features, taps), features, mode, geometry, selection)

    # Branches return flat arrays: a 1-D result has a single layout, so the dense branch's
    # preferred (transposed) output layout cannot force a copy onto the common gather path.
    shape = taps[0].shape[:3] + (out_w, features.shape[-1])
    flat = jax.lax.cond(
        mode == 2,
        lambda: _dense_forward(features, *map(_dense_matrix, axes(geometry))).reshape(-1),
        with_taps)
    return flat.reshape(shape)

  def backward(cotangent, taps, mode, geometry, selection, like):
    shape = (cotangent.shape[0],) + like.shape[1:]
    if not with_dense:
      return _scatter_taps(cotangent, taps, shape)

    def selected_grad():
      a_y, a_x = selected_mats(shape[0], cotangent.dtype, geometry, selection)
      picked = cotangent.reshape((-1,) + cotangent.shape[2:])[selection[0]]
      t = jnp.einsum("nyxc,nxw->nywc", picked, a_x)
      return jnp.einsum("bnyh,nywc->bhwc", a_y, t)

    def with_taps():
      grad = _scatter_taps(cotangent, taps, shape)
      return (grad + jax.lax.cond(mode == 1, selected_grad, lambda: jnp.zeros_like(grad))
              ).reshape(-1)

    grad = jax.lax.cond(
        mode == 2,
        lambda: _dense_backward(cotangent, *map(_dense_matrix, axes(geometry))).reshape(-1),
        with_taps)
    return grad.reshape(shape)

  @jax.custom_vjp
  def pool(features, taps, mode, geometry, selection):
    return forward(features, taps, mode, geometry, selection)

  def pool_fwd(features, taps, mode, geometry, selection):
    like = jnp.zeros((0,) + features.shape[1:], features.dtype)
    return (forward(features, taps, mode, geometry, selection),
            (taps, mode, geometry, selection, like))

  def pool_bwd(residual, cotangent):
    taps, mode, geometry, selection, like = residual
    grad = backward(cotangent, taps, mode, geometry, selection, like)
    zeros = jax.tree.map(_zero_cotangent, (taps, mode, geometry, selection))
    return (grad.astype(like.dtype),) + zeros

  pool.defvjp(pool_fwd, pool_bwd)
  return pool


def _zero_cotangent(x):
  if jnp.issubdtype(x.dtype, jnp.inexact):
    return jnp.zeros_like(x)
  return None


def check_roi_inputs(features, boxes_xyxy, output_size):
  """(features, boxes_xyxy as arrays, (out_h, out_w)) of a RoI pooling call, or a one-line
  ValueError naming the bad argument (shared with `roi_pool`)."""
  output_size = _pair(output_size)
  features, boxes_xyxy = jnp.asarray(features), jnp.asarray(boxes_xyxy)
  if features.ndim != 4:
    raise ValueError(f"features must be [B, H, W, C], got shape {features.shape}")
  if boxes_xyxy.ndim != 3 or boxes_xyxy.shape[-1] != 4 or boxes_xyxy.shape[0] != features.shape[0]:
    raise ValueError(f"boxes_xyxy must be [B, K, 4] with B = {features.shape[0]}, got shape "
                     f"{boxes_xyxy.shape}")
  if min(output_size) < 1:
    raise ValueError(f"output_size must be positive, got {output_size}")
  if not jnp.issubdtype(features.dtype, jnp.floating):
    raise ValueError(f"features must be a float array, got dtype {features.dtype}")
  if 0 in features.shape[1:3]:
    raise ValueError(f"features must have a non-empty map, got shape {features.shape}")
  return features, boxes_xyxy, output_size


def roi_align(features: jnp.ndarray, boxes_xyxy: jnp.ndarray, *, output_size,
              spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False) -> jnp.ndarray:
  """RoIAlign (Mask R-CNN), the same numbers as `torchvision.ops.roi_align` on NCHW features.

  Box coordinates are scaled by `spatial_scale` (and shifted by -0.5 when `aligned`), each box is
  split into output_size bins, and each bin averages grid_h x grid_w bilinear samples, where
  grid = sampling_ratio, or ceil(roi_size / output_size) when sampling_ratio <= 0 (adaptive, the
  torchvision default). Samples more than one pixel outside the map count as 0. A box with a
  non-finite coordinate gives zeros. Gradients flow to `features` only (as torchvision).
  jit-able; under `jax.vmap` the data-dependent loop and path choice are padded to the worst case
  of the batch, so prefer the batch dimension B to vmap.

  Args:
    features: float [B, H, W, C] feature map (NHWC).
    boxes_xyxy: float [B, K, 4] boxes per image in input coordinates (multiplied by
      `spatial_scale` to reach feature coordinates). Padding boxes are fine; mask their outputs.
    output_size: int or (out_h, out_w).
    spatial_scale: feature size / input size, e.g. 1/8 for stride 8.
    sampling_ratio: samples per bin along each axis; <= 0 for torchvision's adaptive count.
    aligned: shift boxes by -0.5 pixel (pixel-centre model, Detectron2 `ROIAlignV2`).

  Returns:
    [B, K, out_h, out_w, C] pooled features, dtype of `features`.
  """
  features, boxes_xyxy, output_size = check_roi_inputs(features, boxes_xyxy, output_size)
  return _roi_align(features, boxes_xyxy, output_size=output_size,
                    spatial_scale=float(spatial_scale), sampling_ratio=int(sampling_ratio),
                    aligned=bool(aligned))


@functools.partial(jax.jit, static_argnames=("output_size", "spatial_scale", "sampling_ratio",
                                             "aligned"))
def _roi_align(features, boxes_xyxy, *, output_size, spatial_scale, sampling_ratio, aligned):
  out_h, out_w = output_size
  _, h, w, _ = features.shape
  dtype = jnp.promote_types(features.dtype, jnp.float32)
  boxes_xyxy = jax.lax.stop_gradient(boxes_xyxy)
  finite = jnp.all(jnp.isfinite(boxes_xyxy), -1)
  boxes = jnp.where(finite[..., None], boxes_xyxy, 0.0).astype(dtype)
  offset = 0.5 if aligned else 0.0
  x1, y1, x2, y2 = (boxes[..., i] * spatial_scale - offset for i in range(4))
  kw = dict(sampling_ratio=sampling_ratio, aligned=aligned)
  ay = _Axis.from_box(y1, y2 - y1, out=out_h, size=h, **kw)
  ax = _Axis.from_box(x1, x2 - x1, out=out_w, size=w, **kw)
  rows, w_rows, span_y, exact_y = _axis_taps(ay, sampling_ratio)
  cols, w_cols, span_x, exact_x = _axis_taps(ax, sampling_ratio)
  # RoIs the taps cannot represent exactly ("big": sampling_ratio <= 0 only) get zero tap
  # weights and go to a per-RoI dense path when there are at most _MAX_BIG of them, otherwise
  # every RoI goes to the dense path.
  big = ~(exact_y & exact_x)
  n_rows, n_cols = jnp.max(jnp.where(big, 0, span_y)), jnp.max(jnp.where(big, 0, span_x))
  w_rows = jnp.where(big[..., None, None], 0.0, w_rows)
  w_cols = jnp.where(big[..., None, None], 0.0, w_cols)
  # The barrier keeps XLA from fusing (recomputing) the tap arithmetic inside the gather loop.
  taps = jax.lax.optimization_barrier((rows, w_rows, n_rows, cols, w_cols, n_cols))
  num_big = jnp.sum(big)
  mode = jnp.where(num_big > _MAX_BIG, 2, jnp.where(num_big > 0, 1, 0)).astype(jnp.int32)
  _, index = jax.lax.top_k(big.reshape(-1).astype(jnp.int32), min(_MAX_BIG, big.size))
  selection = (index, big.reshape(-1)[index])
  # With a fixed sampling ratio the taps are always exact: no dense path is compiled.
  pool = _make_pool(out_h, out_w, h, w, with_dense=sampling_ratio <= 0)
  out = pool(features, taps, mode, (ay.arrays(), ax.arrays()), selection)
  return jnp.where(finite[..., None, None, None], out, 0).astype(features.dtype)
