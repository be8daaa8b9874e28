"""A small CSP-Darknet backbone (YOLOv8-style C2f stages + SPPF) with width/depth multipliers.

`width=0.25, depth=0.33` is the "nano" size, which trains on the 2-core CPU in minutes.
"""

import math

import flax.linen as nn
import jax.numpy as jnp

from jaxdet.models.backbones.base import GlobalPoolFC, register
from jaxdet.models.layers import ConvBN, max_pool

_BASE_WIDTHS = (64, 128, 256, 512, 1024)
_BASE_DEPTHS = (3, 6, 6, 3)


def scaled_width(base, *, width, max_channels=1024, divisor=8):
  """Channels `base * width`, capped and rounded up to a multiple of `divisor` (YOLO rule)."""
  c = min(base, max_channels) * width
  return max(divisor, int(math.ceil(c / divisor) * divisor))


def scaled_depth(base, *, depth):
  """Blocks `round(base * depth)`, at least 1."""
  return max(1, round(base * depth))


class DarkBottleneck(nn.Module):
  """Two 3x3 ConvBN with an optional residual."""
  features: int
  shortcut: bool = True

  @nn.compact
  def __call__(self, x, *, train):
    y = ConvBN(self.features, 3, name="cv1")(x, train=train)
    y = ConvBN(self.features, 3, name="cv2")(y, train=train)
    return x + y if self.shortcut and x.shape[-1] == self.features else y


class C2f(nn.Module):
  """CSP stage: 1x1 split, a chain of bottlenecks on one half, concat every output, 1x1 fuse."""
  features: int
  num_blocks: int = 1
  shortcut: bool = True

  @nn.compact
  def __call__(self, x, *, train):
    hidden = self.features // 2
    y = ConvBN(2 * hidden, 1, name="cv1")(x, train=train)
    outs = [y[..., :hidden], y[..., hidden:]]
    for i in range(self.num_blocks):
      outs.append(DarkBottleneck(hidden, self.shortcut, name=f"m{i}")(outs[-1], train=train))
    return ConvBN(self.features, 1, name="cv2")(jnp.concatenate(outs, axis=-1), train=train)


class SPPF(nn.Module):
  """Spatial pyramid pooling, fast: three chained 5x5 max-pools (receptive fields 5, 9, 13)."""
  features: int

  @nn.compact
  def __call__(self, x, *, train):
    x = ConvBN(x.shape[-1] // 2, 1, name="cv1")(x, train=train)
    y1 = max_pool(x, window=5, stride=1, padding=2)
    y2 = max_pool(y1, window=5, stride=1, padding=2)
    y3 = max_pool(y2, window=5, stride=1, padding=2)
    return ConvBN(self.features, 1, name="cv2")(jnp.concatenate([x, y1, y2, y3], -1), train=train)


class CSPDarknet(nn.Module):
  """CSP-Darknet backbone.

  Attributes:
    width: channel multiplier of (64, 128, 256, 512, 1024).
    depth: block-count multiplier of (3, 6, 6, 3).
    max_channels: cap on channels before the width multiplier.

  Returns from `__call__(images [B,H,W,3] float32, *, train)`: dict `{"c2": [B,H/4,W/4,.],
  "c3": [B,H/8,..], "c4": [B,H/16,..], "c5": [B,H/32,..]}` float32.
  """
  width: float = 0.25
  depth: float = 0.33
  max_channels: int = 1024

  @nn.compact
  def __call__(self, x, *, train):
    ws = [scaled_width(b, width=self.width, max_channels=self.max_channels) for b in _BASE_WIDTHS]
    ds = [scaled_depth(b, depth=self.depth) for b in _BASE_DEPTHS]
    x = ConvBN(ws[0], 3, 2, name="stem")(x, train=train)
    feats = {}
    for stage in range(4):
      x = ConvBN(ws[stage + 1], 3, 2, name=f"down{stage + 1}")(x, train=train)
      x = C2f(ws[stage + 1], ds[stage], True, name=f"stage{stage + 1}")(x, train=train)
      if stage == 3:
        x = SPPF(ws[4], name="sppf")(x, train=train)
      feats[f"c{stage + 2}"] = x
    return feats


@register("csp_darknet", head=GlobalPoolFC, frozen_bn=False)
def _build(name, config, *, frozen_bn, for_detection):
  del name, frozen_bn, for_detection
  return CSPDarknet(width=config.get("width", 0.25), depth=config.get("depth", 0.33),
                    max_channels=config.get("max_channels", 1024))
