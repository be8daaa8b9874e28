"""Feature pyramid network (Lin et al. 2017), torchvision `FeaturePyramidNetwork` semantics."""

import flax.linen as nn
import jax

from jaxdet.models.conv import Conv
from jaxdet.models.layers import ConvBN, conv_padding, upsample_nearest

# torchvision initialises FPN convs with kaiming_uniform(a=1), i.e. variance 1 / fan_in.
_FPN_INIT = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")


class FPN(nn.Module):
  """FPN over C3..C5 with optional P6/P7 (torchvision `LastLevelP6P7`).

  P_l = conv3x3(lateral1x1(C_l) + upsample(inner_{l+1})); P6 = conv3x3/2 of P5 (or of C5 when
  `p6_from="c5"`); P7 = conv3x3/2 of relu(P6).

  Attributes:
    features: channels of every output level.
    extra_levels: add P6 and P7 (RetinaNet).
    p6_from: "p5" (torchvision RetinaNet v1) or "c5" (v2 / original paper).
    min_level: finest level, 3 (C3..C5) or 2 (C2..C5, Faster R-CNN).
    norm: "none" (conv with bias) or "batch" (conv + BatchNorm, torchvision's Faster R-CNN v2:
      each conv is a `ConvBN` module of that name).

  Returns from `__call__(feats: {"c<min_level>",..,"c5"} float32 [B,h,w,C], *, train)`: dict
  `{"p<min_level>",..,"p5"[,"p6","p7"]}` float32 `[B, H/2**l, W/2**l, features]`.
  """
  features: int = 256
  extra_levels: bool = True
  p6_from: str = "p5"
  min_level: int = 3
  norm: str = "none"

  @nn.compact
  def __call__(self, feats, *, train):
    if self.norm not in ("none", "batch"):
      raise ValueError(f"FPN norm must be 'none' or 'batch', got {self.norm!r}")

    def conv(k, s, name):
      if self.norm == "batch":
        return lambda x: ConvBN(self.features, k, s, act=None, name=name)(x, train=train)
      return Conv(self.features, (k, k), strides=(s, s), padding=conv_padding(k),
                  kernel_init=_FPN_INIT, name=name)

    inner = conv(1, 1, "inner5")(feats["c5"])
    outs = {"p5": conv(3, 1, "layer5")(inner)}
    for level in range(4, self.min_level - 1, -1):
      lateral = conv(1, 1, f"inner{level}")(feats[f"c{level}"])
      # `lax.slice`, not indexing: jax2onnx lowers indexing with a symbolic size (the dynamic
      # "rcnn" export) to a gather it cannot convert a second time in one process.
      up = upsample_nearest(inner, factor=2)
      top_down = jax.lax.slice(up, (0, 0, 0, 0), (up.shape[0],) + lateral.shape[1:3] + (
          up.shape[3],))
      inner = lateral + top_down
      outs[f"p{level}"] = conv(3, 1, f"layer{level}")(inner)
    if self.extra_levels:
      if self.p6_from not in ("p5", "c5"):
        raise ValueError(f"p6_from must be 'p5' or 'c5', got {self.p6_from!r}")
      src = outs["p5"] if self.p6_from == "p5" else feats["c5"]
      outs["p6"] = conv(3, 2, "p6")(src)
      outs["p7"] = conv(3, 2, "p7")(nn.relu(outs["p6"]))
    return {k: outs[k] for k in sorted(outs)}
