"""AlexNet (Krizhevsky et al. 2012), torchvision's single-tower variant (64-192-384-256-256)."""

import functools

import flax.linen as nn

from jaxdet.models.backbones.base import MLPHead, pad_to_stride, register
from jaxdet.models.conv import Conv
from jaxdet.models.layers import max_pool

# (features, kernel, stride, padding) of conv1..conv5.
_CONVS = ((64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1))


class AlexNet(nn.Module):
  """AlexNet features: `c2` = relu(conv1) (stride 4), `c3` = relu(conv2) (8), `c4` = relu(conv5)
  (16), `c5` = the last 3x3/2 max-pool (32, the input of the classifier).

  Attributes:
    align_to_stride: zero-pad every feature to `ceil(H / stride)` (detection; the unpadded 11x11
      and 3x3/2 pools give e.g. 63/31/15/7 instead of 64/32/16/8 at 256 px).

  Returns from `__call__(images [B,H,W,3] float32, *, train)`: dict of float32 `[B,h,w,C]`.
  """
  align_to_stride: bool = False

  @nn.compact
  def __call__(self, images, *, train):
    del train  # no BatchNorm or dropout in the features
    conv = lambda i, y: nn.relu(Conv(
        _CONVS[i][0], (_CONVS[i][1],) * 2, strides=(_CONVS[i][2],) * 2,
        padding=((_CONVS[i][3],) * 2,) * 2, name=f"conv{i + 1}")(y))
    pool = functools.partial(max_pool, window=3, stride=2, padding=0)
    feats = {"c2": conv(0, images)}
    feats["c3"] = conv(1, pool(feats["c2"]))
    feats["c4"] = conv(4, conv(3, conv(2, pool(feats["c3"]))))
    feats["c5"] = pool(feats["c4"])
    return pad_to_stride(feats, images.shape[1:3]) if self.align_to_stride else feats


@register("alexnet", head=functools.partial(MLPHead, pool_size=6, dropout_first=True),
          frozen_bn=False)
def _build(name, config, *, frozen_bn, for_detection):
  del name, config, frozen_bn
  return AlexNet(align_to_stride=for_detection)
