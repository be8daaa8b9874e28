"""Backbone construction from a model config (shared by the detectors)."""

import flax.linen as nn

from jaxdet.models.backbones.csp_darknet import CSPDarknet
from jaxdet.models.backbones.resnet import ResNet
from jaxdet.models.backbones.vgg import VGG16

BACKBONES = ("resnet18", "resnet34", "resnet50", "vgg16", "vgg16_bn", "csp_darknet")


def build_backbone(config) -> nn.Module:
  """Backbone module named by `config.backbone`.

  Args:
    config: model ConfigDict with `backbone` in `BACKBONES`; optional `frozen_bn` (ResNet,
      VGG-16-BN), `width`/`depth`/`max_channels` (CSP-Darknet), `backbone_width` (ResNet stem
      width, 64 standard).

  Returns:
    A Linen module mapping images float32 `[B,H,W,3]` to `{"c2".."c5"}` features.
  """
  name = config.backbone
  frozen = bool(config.get("frozen_bn", False))
  if frozen and name in ("vgg16", "csp_darknet"):
    # frozen_param_patterns would freeze BN params whose statistics still move: refuse instead.
    raise ValueError(f"frozen_bn is supported for resnet* and vgg16_bn backbones, not {name!r}")
  if name.startswith("resnet") and name[6:].isdigit():
    return ResNet(depth=int(name[6:]), frozen_bn=frozen, width=config.get("backbone_width", 64))
  if name in ("vgg16", "vgg16_bn"):
    return VGG16(use_bn=name == "vgg16_bn", frozen_bn=frozen)
  if name == "csp_darknet":
    return CSPDarknet(width=config.get("width", 0.25), depth=config.get("depth", 0.33),
                      max_channels=config.get("max_channels", 1024))
  raise ValueError(f"unknown backbone {name!r}; expected one of {BACKBONES}")
