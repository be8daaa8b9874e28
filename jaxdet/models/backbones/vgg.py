"""VGG-16 backbone (Simonyan & Zisserman 2014), optionally with BatchNorm (VGG-16-BN)."""

import flax.linen as nn

from jaxdet.models.conv import Conv
from jaxdet.models.layers import ConvBN, conv_padding, max_pool

# Conv widths per block; a 2x2/2 max-pool precedes every block but the first.
_VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(nn.Module):
  """VGG-16 returning conv3_3 (stride 4), conv4_3 (stride 8), conv5_3 (stride 16), pool5 (32).

  Keys follow the stride convention of the other backbones: `c2` (stride 4), `c3` (stride 8),
  `c4` (stride 16), `c5` (stride 32).

  Attributes:
    use_bn: ConvBN blocks instead of Conv+bias (VGG-16-BN).
    frozen_bn: BatchNorm in inference mode (only with `use_bn`).
    width_divisor: divide every width (tests use small models).

  Returns from `__call__(images [B,H,W,3] float32, *, train)`: dict of float32 `[B,h,w,C]`.
  """
  use_bn: bool = False
  frozen_bn: bool = False
  width_divisor: int = 1

  @nn.compact
  def __call__(self, x, *, train):
    feats = {}
    for b, widths in enumerate(_VGG16):
      if b > 0:
        x = max_pool(x, window=2, stride=2, padding=0)
      for i, w in enumerate(widths):
        w = max(w // self.width_divisor, 1)
        name = f"conv{b + 1}_{i + 1}"
        if self.use_bn:
          x = ConvBN(w, 3, 1, nn.relu, self.frozen_bn, name=name)(x, train=train)
        else:
          x = nn.relu(Conv(w, (3, 3), padding=conv_padding(3), name=name)(x))
      if b >= 2:
        feats[f"c{b}"] = x
    feats["c5"] = max_pool(x, window=2, stride=2, padding=0)
    return feats
