"""The backbone registry, the classifier wrapper and the classifier heads the families share.

A backbone is a Linen module `images float32 [B,H,W,3] -> {"c2": .., "c5": ..}` (strides 4..32,
`STRIDES`), called with `train=`. The same module (same parameters) serves detectors, which name
it `backbone`, and ImageNet classifiers (`Classifier`: `{"backbone": .., "head": ..}`), so that
`init_from` copies a classifier's `backbone` subtree into a detector unchanged.
"""

import dataclasses
import types
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdet.models.layers import adaptive_avg_pool

# Output stride of every backbone feature (all families follow it).
STRIDES = types.MappingProxyType({"c2": 4, "c3": 8, "c4": 16, "c5": 32})


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
  """One registered backbone.

  Attributes:
    name: the `config.model.backbone` value.
    build: `(config, *, frozen_bn, for_detection) -> nn.Module` (the features module).
    head: `(num_classes) -> nn.Module` mapping the features dict to logits (the classifier head).
    frozen_bn: whether `frozen_bn=True` is supported (its BatchNorm modules are named `bn`).
  """
  name: str
  build: Callable[..., nn.Module]
  head: Callable[[int], nn.Module]
  frozen_bn: bool


_REGISTRY: dict[str, BackboneSpec] = {}
# Read-only view: `name in BACKBONES`, `tuple(BACKBONES)`, `BACKBONES[name]`.
BACKBONES = types.MappingProxyType(_REGISTRY)


def register(*names: str, head: Callable[[int], nn.Module], frozen_bn: bool = True):
  """Decorator registering `build(name, config, *, frozen_bn, for_detection) -> nn.Module` under
  each of `names`."""
  def deco(build):
    for name in names:
      if name in _REGISTRY:
        raise ValueError(f"backbone {name!r} is registered twice")
      _REGISTRY[name] = BackboneSpec(
          name, lambda config, n=name, **kw: build(n, config, **kw), head, frozen_bn)
    return build
  return deco


def get_spec(name: str) -> BackboneSpec:
  """The registered backbone `name`; ValueError naming the known ones otherwise."""
  if name not in _REGISTRY:
    raise ValueError(f"unknown backbone {name!r}; expected one of {tuple(_REGISTRY)}")
  return _REGISTRY[name]


class Classifier(nn.Module):
  """Backbone + classifier head (an ImageNet classifier).

  `__call__(images float32 [B,H,W,3], *, train=False)` returns logits float32 `[B, num_classes]`
  (GoogLeNet in training: a dict with `logits`, `aux_logits1`, `aux_logits2`). Variables:
  `{"params": {"backbone", "head"}, "batch_stats": {...}}`.
  """
  backbone: nn.Module
  head: nn.Module

  def __call__(self, images, *, train=False):
    return self.head(self.backbone(images, train=train), train=train)


class GlobalPoolFC(nn.Module):
  """Global average pool of `c5` then one Linear layer `fc` (ResNet, DenseNet, CSP-Darknet)."""
  num_classes: int

  @nn.compact
  def __call__(self, feats, *, train=False):
    del train
    return nn.Dense(self.num_classes, name="fc")(jnp.mean(feats["c5"], axis=(1, 2)))


class MLPHead(nn.Module):
  """torchvision's VGG / AlexNet classifier: adaptive average pool of `c5` to `pool_size`,
  flatten (NHWC order; the converter permutes torchvision's CHW weights), fc1 -> ReLU -> fc2 ->
  ReLU -> fc3, with dropout before fc1 and fc2 (AlexNet, `dropout_first`) or after the ReLUs
  (VGG)."""
  num_classes: int
  pool_size: int = 7
  hidden: int = 4096
  dropout: float = 0.5
  dropout_first: bool = False

  @nn.compact
  def __call__(self, feats, *, train=False):
    x = adaptive_avg_pool(feats["c5"], self.pool_size)
    x = x.reshape(x.shape[0], -1)
    drop = lambda y: nn.Dropout(self.dropout, deterministic=not train)(y)
    for i in (1, 2):
      x = drop(x) if self.dropout_first else x
      x = nn.relu(nn.Dense(self.hidden, name=f"fc{i}")(x))
      x = x if self.dropout_first else drop(x)
    return nn.Dense(self.num_classes, name="fc3")(x)


def pad_to_stride(feats, image_hw):
  """Zero-pads each feature `cL` at the bottom/right to `ceil(H / STRIDES[cL])` (AlexNet's
  unpadded convolutions fall short of it; detectors need exact 2x steps between levels)."""
  out = {}
  for key, x in feats.items():
    s = STRIDES[key]
    th, tw = -(-image_hw[0] // s), -(-image_hw[1] // s)
    out[key] = jnp.pad(x, ((0, 0), (0, max(0, th - x.shape[1])), (0, max(0, tw - x.shape[2])),
                           (0, 0)))[:, :th, :tw]
  return out


def feature_channels(module: nn.Module, image_size: int = 64) -> dict[str, int]:
  """Channels of each feature of a backbone module, by tracing (no compute): `{"c2": C2, ...}`."""
  x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  out, _ = jax.eval_shape(lambda a: module.init_with_output(jax.random.key(0), a, train=False), x)
  return {k: int(v.shape[-1]) for k, v in out.items() if k in STRIDES}
