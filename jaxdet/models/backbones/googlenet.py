"""GoogLeNet (Inception v1, Szegedy et al. 2014) as torchvision builds it.

torchvision's details kept for weight parity: BatchNorm after every conv (epsilon 1e-3), the
"5x5" branch is a 3x3 conv, max-pools round up (`ceil_mode=True`), and `transform_input` maps
ImageNet-normalized inputs to the (x - 0.5) / 0.5 normalization the original weights expect
(torchvision turns it on with its pretrained weights).
"""

import functools

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxdet.models.backbones.base import register
from jaxdet.models.layers import ConvBN, adaptive_avg_pool, max_pool

BN_EPSILON = 1e-3  # torchvision BasicConv2d
_MEAN = np.array((0.485, 0.456, 0.406), np.float32)
_STD = np.array((0.229, 0.224, 0.225), np.float32)

# (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj) of each Inception block.
_BLOCKS = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}

# Block -> feature key of its output.
_OUTPUTS = {"3b": "c3", "4a": "inception4a", "4d": "inception4d", "4e": "c4", "5b": "c5"}


def _conv(features, kernel, frozen_bn, name, strides=1):
  """torchvision BasicConv2d: conv (no bias) -> BatchNorm(eps 1e-3) -> ReLU."""
  return ConvBN(features, kernel, strides, nn.relu, frozen_bn, epsilon=BN_EPSILON, name=name)


class Inception(nn.Module):
  """Four parallel branches concatenated: 1x1; 1x1 -> 3x3; 1x1 -> 3x3; 3x3/1 max-pool -> 1x1."""
  widths: tuple[int, ...]
  frozen_bn: bool = False

  @nn.compact
  def __call__(self, x, *, train):
    c1, c3r, c3, c5r, c5, cp = self.widths
    f = self.frozen_bn
    b1 = _conv(c1, 1, f, "branch1")(x, train=train)
    b2 = _conv(c3, 3, f, "branch2_1")(_conv(c3r, 1, f, "branch2_0")(x, train=train), train=train)
    b3 = _conv(c5, 3, f, "branch3_1")(_conv(c5r, 1, f, "branch3_0")(x, train=train), train=train)
    pooled = max_pool(x, window=3, stride=1, padding=1, ceil_mode=True)
    b4 = _conv(cp, 1, f, "branch4_1")(pooled, train=train)
    return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class GoogLeNet(nn.Module):
  """GoogLeNet features: `c2` = conv3 (stride 4, 192 ch), `c3` = inception3b (8, 480), `c4` =
  inception4e (16, 832), `c5` = inception5b (32, 1024); also `inception4a` / `inception4d`, the
  inputs of the auxiliary classifiers.

  Attributes:
    transform_input: see the module docstring (True: feed ImageNet-normalized images to
      torchvision's pretrained weights, as torchvision does).
    frozen_bn: every BatchNorm in inference mode.

  Returns from `__call__(images [B,H,W,3] float32, *, train)`: dict of float32 `[B,h,w,C]`.
  """
  transform_input: bool = True
  frozen_bn: bool = False

  @nn.compact
  def __call__(self, x, *, train):
    if self.transform_input:
      x = x * (_STD / 0.5) + (_MEAN - 0.5) / 0.5
    f = self.frozen_bn
    pool = functools.partial(max_pool, window=3, stride=2, padding=0, ceil_mode=True)
    x = pool(_conv(64, 7, f, "conv1", strides=2)(x, train=train))
    x = _conv(64, 1, f, "conv2")(x, train=train)
    feats = {"c2": _conv(192, 3, f, "conv3")(x, train=train)}
    x = pool(feats["c2"])
    for block in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
      if block == "4a":
        x = pool(x)
      elif block == "5a":
        x = max_pool(x, window=2, stride=2, padding=0, ceil_mode=True)
      x = Inception(_BLOCKS[block], f, name=f"inception{block}")(x, train=train)
      if block in _OUTPUTS:
        feats[_OUTPUTS[block]] = x
    return feats


class InceptionAux(nn.Module):
  """Auxiliary classifier: 4x4 adaptive average pool -> 1x1 conv (128) -> fc1 (1024) -> ReLU ->
  dropout -> fc2. Flattened in NHWC order (the converter permutes torchvision's fc1)."""
  num_classes: int
  dropout: float = 0.7

  @nn.compact
  def __call__(self, x, *, train):
    x = _conv(128, 1, False, "conv")(adaptive_avg_pool(x, 4), train=train)
    x = nn.relu(nn.Dense(1024, name="fc1")(x.reshape(x.shape[0], -1)))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name="fc2")(x)


class GoogLeNetHead(nn.Module):
  """Global average pool of `c5` -> dropout -> `fc`; in training also the auxiliary classifiers
  `aux1` (on inception4a) and `aux2` (on inception4d), as torchvision.

  Returns logits float32 `[B, num_classes]`, or in training a dict `logits`, `aux_logits1`,
  `aux_logits2` (each `[B, num_classes]`).
  """
  num_classes: int
  dropout: float = 0.2
  aux_dropout: float = 0.7

  @nn.compact
  def __call__(self, feats, *, train=False):
    x = jnp.mean(feats["c5"], axis=(1, 2))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, name="fc")(x)
    # The auxiliary heads exist in every parameter tree (init) but run only in training.
    if not (train or self.is_initializing()):
      return logits
    aux1 = InceptionAux(self.num_classes, self.aux_dropout, name="aux1")(
        feats["inception4a"], train=train)
    aux2 = InceptionAux(self.num_classes, self.aux_dropout, name="aux2")(
        feats["inception4d"], train=train)
    if not train:
      return logits
    return {"logits": logits, "aux_logits1": aux1, "aux_logits2": aux2}


@register("googlenet", head=GoogLeNetHead)
def _build(name, config, *, frozen_bn, for_detection):
  del name, for_detection
  return GoogLeNet(transform_input=bool(config.get("transform_input", True)), frozen_bn=frozen_bn)
