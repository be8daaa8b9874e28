"""Multi-scale RoIAlign over FPN levels, torchvision `MultiScaleRoIAlign` semantics.

Each box goes to the level k = clamp(floor(k0 + log2(sqrt(area) / s0) + 1e-6), k_min, k_max)
(FPN paper eq. 1, canonical scale s0 = 224, canonical level k0 = 4), where level k has stride 2^k,
and is pooled there with `roi_align`. Static shapes: every level pools every box and the box's
own level is selected (exact; a few times the work of pooling once).
"""

import math
from collections.abc import Sequence

import jax.numpy as jnp

from jaxdet.ops.roi_align import roi_align


def infer_scale(feature_size: int, image_size: int) -> float:
  """torchvision's `_infer_scale`: 2 ** round(log2(feature_size / image_size))."""
  return 2.0 ** round(math.log2(float(feature_size) / float(image_size)))


def roi_levels(boxes_xyxy: jnp.ndarray, *, k_min: int, k_max: int, canonical_scale: float = 224.0,
               canonical_level: int = 4, eps: float = 1e-6) -> jnp.ndarray:
  """FPN level index of every box (torchvision `LevelMapper`), counted from k_min.

  Args:
    boxes_xyxy: float [..., 4] boxes in input pixels.
    k_min, k_max: the finest and coarsest level (log2 of their strides).
    canonical_scale, canonical_level: s0 and k0 of the mapping.
    eps: added before the floor, as torchvision.

  Returns:
    int32 [...] in [0, k_max - k_min].
  """
  boxes = boxes_xyxy.astype(jnp.float32)
  area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
  level = jnp.floor(canonical_level + jnp.log2(jnp.sqrt(area) / jnp.float32(canonical_scale))
                    + jnp.float32(eps))
  # NaN (degenerate or padding boxes with negative area) goes to the finest level.
  level = jnp.where(jnp.isnan(level), k_min, level)
  return (jnp.clip(level, k_min, k_max) - k_min).astype(jnp.int32)


def multiscale_roi_align(features: Sequence[jnp.ndarray], boxes_xyxy: jnp.ndarray, *,
                         image_size, output_size=7, sampling_ratio: int = 2,
                         canonical_scale: float = 224.0, canonical_level: int = 4,
                         aligned: bool = False) -> jnp.ndarray:
  """RoIAlign of each box on its FPN level (torchvision `MultiScaleRoIAlign`).

  Args:
    features: float [B, h_l, w_l, C] maps, finest first (e.g. P2..P5, strides 4..32); the scale
      of each is inferred from its size as torchvision does.
    boxes_xyxy: float [B, K, 4] boxes in input pixels (padding boxes: mask their outputs).
    image_size: int S or (H, W) of the input images (a padded batch: its padded size, whose
      ratios to the maps are exactly the strides; torchvision infers the scales once, from the
      first batch it pools, and keeps them: the strides' for any ordinary image).
    output_size: int or (out_h, out_w).
    sampling_ratio: bilinear samples per bin and axis (torchvision's Faster R-CNN: 2; <= 0
      adaptive).
    canonical_scale, canonical_level: the level mapping's s0 and k0.
    aligned: half-pixel offset of `roi_align` (torchvision's MultiScaleRoIAlign: False).

  Returns:
    [B, K, out_h, out_w, C] pooled features, dtype of the features.
  """
  if not features:
    raise ValueError("features must hold at least one level")
  height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
  scales = []
  for f in features:
    scale_h, scale_w = infer_scale(f.shape[1], height), infer_scale(f.shape[2], width)
    if scale_h != scale_w:
      raise ValueError(f"feature map {f.shape} has different scales along H and W for an "
                       f"image of {height}x{width}")
    scales.append(scale_h)
  kw = dict(output_size=output_size, sampling_ratio=sampling_ratio, aligned=aligned)
  if len(features) == 1:
    return roi_align(features[0], boxes_xyxy, spatial_scale=scales[0], **kw)
  k_min, k_max = round(-math.log2(scales[0])), round(-math.log2(scales[-1]))
  levels = roi_levels(boxes_xyxy, k_min=k_min, k_max=k_max, canonical_scale=canonical_scale,
                      canonical_level=canonical_level)
  out = None
  for index, (f, scale) in enumerate(zip(features, scales)):
    pooled = roi_align(f, boxes_xyxy, spatial_scale=scale, **kw)
    out = pooled if out is None else jnp.where(
        (levels == index)[..., None, None, None], pooled, out)
  return out
