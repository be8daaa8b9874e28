"""VGG-11/13/16/19 (Simonyan & Zisserman 2014), each with or without BatchNorm (torchvision).

Parameter names `conv{block}_{i}` (a Conv with bias, or `{conv,bn}` with BatchNorm) are those of
jaxdet's earlier VGG-16 checkpoints.
"""

import flax.linen as nn
import jax.numpy as jnp

from jaxdet.models.backbones.base import MLPHead, register
from jaxdet.models.conv import Conv
from jaxdet.models.layers import ConvBN, conv_padding, max_pool

# Conv widths per block (torchvision configs A, B, D, E); a 2x2/2 max-pool precedes every block
# but the first and follows the last.
CONFIGS = {
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


class VGG(nn.Module):
  """VGG features returning the last conv of blocks 3, 4, 5 (strides 4, 8, 16) and pool5 (32).

  Keys follow the stride convention of the other backbones: `c2` (stride 4), `c3` (stride 8),
  `c4` (stride 16), `c5` (stride 32, the input of torchvision's classifier).

  Attributes:
    depth: 11, 13, 16 or 19.
    use_bn: ConvBN blocks instead of Conv+bias (VGG-*-BN).
    frozen_bn: BatchNorm in inference mode (only with `use_bn`).
    width_divisor: divide every width (tests use small models).
    first_padding: padding of the first conv (1; FCN's Caffe VGG pads it by 100 so that its
      unpadded fc6 and the crops fit any input size).

  Returns from `__call__(images [B,H,W,3] float32, *, train)`: dict of float32 `[B,h,w,C]`.
  """
  use_bn: bool = False
  frozen_bn: bool = False
  width_divisor: int = 1
  depth: int = 16
  first_padding: int = 1

  @nn.compact
  def __call__(self, x, *, train):
    if self.depth not in CONFIGS:
      raise ValueError(f"VGG depth must be one of {sorted(CONFIGS)}, got {self.depth}")
    feats = {}
    for b, widths in enumerate(CONFIGS[self.depth]):
      if b > 0:
        x = max_pool(x, window=2, stride=2, padding=0)
      for i, w in enumerate(widths):
        w = max(w // self.width_divisor, 1)
        name = f"conv{b + 1}_{i + 1}"
        if b == 0 and i == 0 and self.first_padding != 1:
          x = jnp.pad(x, ((0, 0),) + ((self.first_padding - 1,) * 2,) * 2 + ((0, 0),))
        if self.use_bn:
          x = ConvBN(w, 3, 1, nn.relu, self.frozen_bn, name=name)(x, train=train)
        else:
          x = nn.relu(Conv(w, (3, 3), padding=conv_padding(3), name=name)(x))
      if b >= 2:
        feats[f"c{b}"] = x
    feats["c5"] = max_pool(x, window=2, stride=2, padding=0)
    return feats


# The name earlier code imports (depth defaults to 16).
VGG16 = VGG

_NAMES = tuple(f"vgg{d}{bn}" for d in CONFIGS for bn in ("", "_bn"))


@register(*(n for n in _NAMES if n.endswith("_bn")), head=MLPHead)
@register(*(n for n in _NAMES if not n.endswith("_bn")), head=MLPHead, frozen_bn=False)
def _build(name, config, *, frozen_bn, for_detection):
  del config, for_detection
  return VGG(use_bn=name.endswith("_bn"), frozen_bn=frozen_bn, depth=int(name[3:5]))
