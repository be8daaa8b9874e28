"""Path-aggregation neck (PANet, YOLOv8 layout): top-down FPN then a bottom-up path."""

import flax.linen as nn
import jax.numpy as jnp

from jaxdet.models.backbones.csp_darknet import C2f
from jaxdet.models.layers import ConvBN, upsample_nearest


class PAN(nn.Module):
  """PAN over C3..C5.

  Attributes:
    features: output channels of (P3, P4, P5).
    num_blocks: bottlenecks per C2f block.

  Returns from `__call__(feats: {"c3","c4","c5"} float32 [B,h,w,C], *, train)`: dict
  `{"p3": [B,H/8,W/8,f3], "p4": [B,H/16,..,f4], "p5": [B,H/32,..,f5]}` float32.
  """
  features: tuple[int, int, int] = (64, 128, 256)
  num_blocks: int = 1

  @nn.compact
  def __call__(self, feats, *, train):
    f3, f4, f5 = self.features
    c3, c4, c5 = feats["c3"], feats["c4"], feats["c5"]
    cat = lambda *xs: jnp.concatenate(xs, axis=-1)
    n4 = C2f(f4, self.num_blocks, False, name="td4")(cat(upsample_nearest(c5), c4), train=train)
    p3 = C2f(f3, self.num_blocks, False, name="td3")(cat(upsample_nearest(n4), c3), train=train)
    d3 = ConvBN(f3, 3, 2, name="down3")(p3, train=train)
    p4 = C2f(f4, self.num_blocks, False, name="bu4")(cat(d3, n4), train=train)
    d4 = ConvBN(f4, 3, 2, name="down4")(p4, train=train)
    p5 = C2f(f5, self.num_blocks, False, name="bu5")(cat(d4, c5), train=train)
    return {"p3": p3, "p4": p4, "p5": p5}
