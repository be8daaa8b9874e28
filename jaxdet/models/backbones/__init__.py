"""Backbones: one registry (`BACKBONES`), detection features and ImageNet classifiers.

Families (one module each, registered on import): AlexNet, VGG-11/13/16/19 (+ `_bn`), GoogLeNet,
ResNet-18/34/50/101/152, DenseNet-121/161/169/201 and CSP-Darknet. Every backbone maps images
float32 `[B,H,W,3]` to `{"c2","c3","c4","c5"}` at strides `STRIDES` (4, 8, 16, 32), so every
detector takes any of them (`config.model.backbone`). `build_classifier` puts the torchvision
classifier head on the same module: variables `{"backbone", "head"}`, whose `backbone` subtree is
what a detector's `backbone` holds.
"""

import ml_collections

from jaxdet.models.backbones.base import (BACKBONES, STRIDES, BackboneSpec, Classifier,
                                          feature_channels, get_spec, register)
# Importing the families registers them.
from jaxdet.models.backbones import alexnet, csp_darknet, densenet, googlenet, resnet, vgg  # noqa: F401,E501  pylint: disable=unused-import


def _spec_and_frozen(config):
  spec = get_spec(config.backbone)
  frozen = bool(config.get("frozen_bn", False))
  if frozen and not spec.frozen_bn:
    # frozen_param_patterns would freeze BN params whose statistics still move, or nothing at all.
    supported = [n for n, s in BACKBONES.items() if s.frozen_bn]
    raise ValueError(f"frozen_bn is supported for {supported}, not {config.backbone!r}")
  return spec, frozen


def build_backbone(config):
  """Detection backbone named by `config.backbone`.

  Args:
    config: model ConfigDict with `backbone` in `BACKBONES`; optional `frozen_bn` (backbones with
      BatchNorm), `width`/`depth`/`max_channels` (CSP-Darknet), `backbone_width` (ResNet stem
      width, 64 standard), `transform_input` (GoogLeNet, default True).

  Returns:
    A Linen module mapping images float32 `[B,H,W,3]` to `{"c2".."c5"}` features (strides 4..32;
    `ceil(H / stride)` pixels a side when H is a multiple of 32).
  """
  spec, frozen = _spec_and_frozen(config)
  return spec.build(config, frozen_bn=frozen, for_detection=True)


def build_classifier(arch: str, num_classes: int = 1000, config=None) -> Classifier:
  """ImageNet-style classifier: backbone `arch` + its torchvision classifier head.

  Args:
    arch: a name in `BACKBONES` (e.g. "resnet50").
    num_classes: logits per image.
    config: optional model ConfigDict with backbone options (see `build_backbone`).

  Returns:
    A `Classifier`: `apply(variables, images float32 [B,H,W,3], train=False)` -> logits float32
    `[B, num_classes]`.
  """
  config = ml_collections.ConfigDict(dict(config or {}))
  config.backbone = arch
  spec, frozen = _spec_and_frozen(config)
  return Classifier(backbone=spec.build(config, frozen_bn=frozen, for_detection=False),
                    head=spec.head(num_classes))


__all__ = ["BACKBONES", "STRIDES", "BackboneSpec", "Classifier", "build_backbone",
           "build_classifier", "feature_channels", "get_spec", "register"]
