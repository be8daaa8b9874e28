"""ResNet-18/34/50/101/152 (He et al. 2016), torchvision layout (stride on the 3x3 conv, v1.5).

Parameter names (`stem`, `layer{s}_{i}/conv{k}|downsample/{conv,bn}`) are those of jaxdet's
earlier checkpoints; `jaxdet.convert.torchvision` maps torchvision's names onto them.
"""

import flax.linen as nn

from jaxdet.models.backbones.base import GlobalPoolFC, register
from jaxdet.models.layers import ConvBN, max_pool

# depth -> (block type, blocks per stage)
_SPECS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
_WIDTHS = (64, 128, 256, 512)


class BasicBlock(nn.Module):
  """Two 3x3 convs with identity/projection shortcut (expansion 1)."""
  features: int
  strides: int = 1
  frozen_bn: bool = False
  dilation: int = 1

  @nn.compact
  def __call__(self, x, *, train):
    if self.dilation != 1:  # As torchvision: dilation is a Bottleneck option.
      raise ValueError(f"ResNet BasicBlock (depth 18/34) has no dilation, got {self.dilation}")
    y = ConvBN(self.features, 3, self.strides, nn.relu, self.frozen_bn, name="conv1")(
        x, train=train)
    y = ConvBN(self.features, 3, 1, None, self.frozen_bn, name="conv2")(y, train=train)
    if x.shape[-1] != self.features or self.strides != 1:
      x = ConvBN(self.features, 1, self.strides, None, self.frozen_bn, name="downsample")(
          x, train=train)
    return nn.relu(x + y)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (strided or dilated) -> 1x1 (x4) with projection shortcut."""
  features: int
  strides: int = 1
  frozen_bn: bool = False
  dilation: int = 1

  @nn.compact
  def __call__(self, x, *, train):
    out = self.features * 4
    y = ConvBN(self.features, 1, 1, nn.relu, self.frozen_bn, name="conv1")(x, train=train)
    y = ConvBN(self.features, 3, self.strides, nn.relu, self.frozen_bn, dilation=self.dilation,
               name="conv2")(y, train=train)
    y = ConvBN(out, 1, 1, None, self.frozen_bn, name="conv3")(y, train=train)
    if x.shape[-1] != out or self.strides != 1:
      x = ConvBN(out, 1, self.strides, None, self.frozen_bn, name="downsample")(x, train=train)
    return nn.relu(x + y)


class ResNet(nn.Module):
  """ResNet backbone returning C2..C5.

  Attributes:
    depth: 18, 34, 50, 101 or 152.
    frozen_bn: every BatchNorm in inference mode (exclude `backbone/.*/bn/` params from training).
    width: channels of the first stage (64 is standard; smaller for tests).
    replace_stride_with_dilation: for stages 2, 3, 4 (c3, c4, c5), torchvision's option of the
      same name: that stage keeps its input's stride and dilates its 3x3 convs instead (the
      first block by the dilation so far, the others by twice it). `(False, True, True)` is the
      output-stride-8 body of torchvision's FCN and DeepLabV3. Bottleneck depths only.

  Returns from `__call__(images [B,H,W,3] float32, *, train)`: dict `{"c2": [B,H/4,W/4,C2],
  "c3": [B,H/8,..], "c4": [B,H/16,..], "c5": [B,H/32,..]}` float32 (a dilated stage keeps the
  stride of the one before it).
  """
  depth: int = 50
  frozen_bn: bool = False
  width: int = 64
  replace_stride_with_dilation: tuple[bool, bool, bool] = (False, False, False)

  @nn.compact
  def __call__(self, x, *, train):
    if self.depth not in _SPECS:
      raise ValueError(f"ResNet depth must be one of {sorted(_SPECS)}, got {self.depth}")
    kind, blocks = _SPECS[self.depth]
    block_cls = BasicBlock if kind == "basic" else Bottleneck
    x = ConvBN(self.width, 7, 2, nn.relu, self.frozen_bn, name="stem")(x, train=train)
    x = max_pool(x, window=3, stride=2, padding=1)
    if len(self.replace_stride_with_dilation) != 3:
      raise ValueError("replace_stride_with_dilation needs 3 values (stages 2-4), got "
                       f"{self.replace_stride_with_dilation!r}")
    feats, dilation = {}, 1
    for stage, num in enumerate(blocks):
      features = self.width * (2**stage)
      first_dilation, stride = dilation, 2 if stage > 0 else 1
      if stage > 0 and self.replace_stride_with_dilation[stage - 1]:
        dilation, stride = dilation * 2, 1
      for i in range(num):
        x = block_cls(features, stride if i == 0 else 1, self.frozen_bn,
                      dilation=first_dilation if i == 0 else dilation,
                      name=f"layer{stage + 1}_{i}")(x, train=train)
      feats[f"c{stage + 2}"] = x
    return feats


@register("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", head=GlobalPoolFC)
def _build(name, config, *, frozen_bn, for_detection):
  del for_detection
  return ResNet(depth=int(name[6:]), frozen_bn=frozen_bn, width=config.get("backbone_width", 64))
