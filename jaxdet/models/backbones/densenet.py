"""DenseNet-121/161/169/201 (Huang et al. 2017) as torchvision builds them (bn_size 4,
compression 0.5, no dropout).

BatchNorm modules are named `bn` (inside `unit1`/`unit2`, the transitions and `norm5`) so that
`frozen_bn` freezes them by path like the other backbones.
"""

import flax.linen as nn
import jax.numpy as jnp

from jaxdet.models.backbones.base import GlobalPoolFC, register
from jaxdet.models.conv import Conv
from jaxdet.models.layers import BN_EPSILON, BN_MOMENTUM, ConvBN, conv_padding, max_pool

# depth -> (growth rate, layers per dense block, stem width)
SPECS = {
    121: (32, (6, 12, 24, 16), 64),
    161: (48, (6, 12, 36, 24), 96),
    169: (32, (6, 12, 32, 32), 64),
    201: (32, (6, 12, 48, 32), 64),
}
BN_SIZE = 4


def _bn(frozen_bn, train):
  return nn.BatchNorm(use_running_average=(not train) or frozen_bn, momentum=BN_MOMENTUM,
                      epsilon=BN_EPSILON, name="bn")


class BNReLU(nn.Module):
  """BatchNorm (`bn`) -> ReLU."""
  frozen_bn: bool = False

  @nn.compact
  def __call__(self, x, *, train):
    return nn.relu(_bn(self.frozen_bn, train)(x))


class BNReLUConv(nn.Module):
  """Pre-activation unit: BatchNorm (`bn`) -> ReLU -> conv (`conv`, no bias)."""
  features: int
  kernel_size: int = 1
  frozen_bn: bool = False

  @nn.compact
  def __call__(self, x, *, train):
    k = self.kernel_size
    x = nn.relu(_bn(self.frozen_bn, train)(x))
    return Conv(self.features, (k, k), padding=conv_padding(k), use_bias=False, name="conv")(x)


class DenseNet(nn.Module):
  """DenseNet features: `c2`..`c4` = outputs of dense blocks 1..3 (strides 4, 8, 16; before each
  transition), `c5` = relu(norm5(block 4)) (stride 32, the input of the classifier).

  Attributes:
    depth: 121, 161, 169 or 201.
    frozen_bn: every BatchNorm in inference mode.

  Returns from `__call__(images [B,H,W,3] float32, *, train)`: dict of float32 `[B,h,w,C]`
  (DenseNet-121: 256, 512, 1024, 1024 channels).
  """
  depth: int = 121
  frozen_bn: bool = False

  @nn.compact
  def __call__(self, x, *, train):
    if self.depth not in SPECS:
      raise ValueError(f"DenseNet depth must be one of {sorted(SPECS)}, got {self.depth}")
    growth, layers, width = SPECS[self.depth]
    f = self.frozen_bn
    x = ConvBN(width, 7, 2, nn.relu, f, name="stem")(x, train=train)
    x = max_pool(x, window=3, stride=2, padding=1)
    feats = {}
    for b, num in enumerate(layers):
      for i in range(num):
        y = BNReLUConv(BN_SIZE * growth, 1, f, name=f"denseblock{b + 1}_layer{i + 1}_unit1")(
            x, train=train)
        y = BNReLUConv(growth, 3, f, name=f"denseblock{b + 1}_layer{i + 1}_unit2")(y, train=train)
        x = jnp.concatenate([x, y], axis=-1)
      if b == 3:
        feats["c5"] = BNReLU(f, name="norm5")(x, train=train)
      else:
        feats[f"c{b + 2}"] = x
        x = BNReLUConv(x.shape[-1] // 2, 1, f, name=f"transition{b + 1}")(x, train=train)
        # Keyword window: jax2onnx patches nn.avg_pool with a keyword-only signature.
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2), padding="VALID")
    return feats


@register("densenet121", "densenet161", "densenet169", "densenet201", head=GlobalPoolFC)
def _build(name, config, *, frozen_bn, for_detection):
  del config, for_detection
  return DenseNet(depth=int(name[8:]), frozen_bn=frozen_bn)
