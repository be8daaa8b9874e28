"""torchvision RetinaNet -> jaxdet: `retinanet_resnet50_fpn` (v1) and `_v2` onto jaxdet's RetinaNet.

The name map covers backbone (`backbone.body.*`, ResNet-50), FPN (`backbone.fpn.*`) and the two
heads (`head.{classification,regression}_head.*`); the loader is `convert_variables` of
`jaxdet.convert.torchvision`. The config carries the variant's settings: P6 from P5 (v1) or C5
(v2), GroupNorm heads (v2), torchvision's anchors, BoxCoder (1, 1, 1, 1) and its clip, its
preprocessing, and its postprocess settings (per-level top 1000, score 0.05, NMS 0.5, 300
detections).
"""

import re

import jax
import jax.numpy as jnp

from jaxdet.convert import torchvision as tv
from jaxdet.convert.loader import to_numpy

# torchvision's COCO label names (91 indices, "__background__" and "N/A" included), so that a
# converted COCO model reports torchvision's label indices with their names.
COCO_CATEGORIES = (
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train",
    "truck", "boat", "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter",
    "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
    "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A", "handbag", "tie", "suitcase",
    "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove",
    "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot",
    "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A",
    "dining table", "N/A", "N/A", "toilet", "N/A", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "N/A",
    "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush")

# arch -> RetinaNet config fields of the variant.
RETINANET_VARIANTS = {
    "retinanet_resnet50_fpn": {"p6_from": "p5", "head_norm": "none", "box_loss": "l1",
                               "frozen_bn": True},
    "retinanet_resnet50_fpn_v2": {"p6_from": "c5", "head_norm": "group", "box_loss": "giou",
                                  "frozen_bn": False},
}
_NUM_ANCHORS = 9

# Files saved before torchvision's `_version = 2` modules name the FPN convs `inner_blocks.0.weight`
# (now `inner_blocks.0.0.weight`) and the v1 head convs `conv.{0,2,4,6}` (now `conv.{i}.0`).
_LEGACY_FPN = re.compile(r"^(backbone\.fpn\.(?:inner|layer)_blocks\.\d+)\.(weight|bias)$")
_LEGACY_HEAD = re.compile(r"^(head\.(?:classification|regression)_head\.conv)\.(\d+)\.(weight|bias)$")


def _retinanet(path):
  top, *rest = path
  if top == "backbone":
    prefix, _ = tv.resnet_name(path)
    return f"backbone.body.{prefix}", None
  if top == "fpn":
    name = rest[0]
    if name in ("p6", "p7"):
      return f"backbone.fpn.extra_blocks.{name}", None
    kind = "inner_blocks" if name.startswith("inner") else "layer_blocks"
    return f"backbone.fpn.{kind}.{int(name[-1]) - 3}.0", None
  head = "classification_head" if top == "cls_head" else "regression_head"
  name = rest[0]
  if name == "out":
    return f"head.{head}.{'cls_logits' if top == 'cls_head' else 'bbox_reg'}", None
  kind, index = re.fullmatch(r"(conv|gn)(\d+)", name).groups()  # Conv2dNormActivation .0 / .1
  return f"head.{head}.conv.{index}.{0 if kind == 'conv' else 1}", None


def upgrade_legacy_keys(state_dict):
  """The state dict with pre-`_version = 2` FPN and head key names renamed (others unchanged)."""
  out = {}
  for key, value in state_dict.items():
    key = _LEGACY_FPN.sub(r"\1.0.\2", key)
    m = _LEGACY_HEAD.match(key)
    if m:
      key = f"{m.group(1)}.{int(m.group(2)) // 2}.0.{m.group(3)}"
    out[key] = value
  return out


def _num_classes(state_dict) -> int:
  key = "head.classification_head.cls_logits.bias"
  if key not in state_dict:
    raise tv.ConversionError(f"missing key {key!r} in the state dict")
  return int(to_numpy(state_dict[key]).shape[0]) // _NUM_ANCHORS


def class_names(num_classes: int) -> list[str]:
  """torchvision's COCO names for a 91-class model, else the indices as strings."""
  return list(COCO_CATEGORIES) if num_classes == len(COCO_CATEGORIES) else [
      str(i) for i in range(num_classes)]


def retinanet_config(arch: str, *, num_classes: int, image_size: int | None = None,
                     min_size: int | None = None, max_size: int | None = None):
  """The resolved training config of a converted torchvision RetinaNet (`base_config()` plus the
  variant's model settings, preprocessing and postprocess settings)."""
  from jaxdet import models
  from jaxdet.train import config as config_lib
  config = config_lib.base_config()
  # torchvision's transform: min/max-size resize, pad to 32 (`--image-size S`: both sizes S).
  preprocess, config.image_size = tv.rcnn_preprocess(image_size=image_size, min_size=min_size,
                                                     max_size=max_size)
  config.model = models.default_config("retinanet")
  config.model.update(backbone="resnet50", **RETINANET_VARIANTS[arch])
  config.model.preprocess = preprocess
  # torchvision fine-tunes its pretrained detectors with the stem and layer1 fixed
  # (trainable_backbone_layers=3).
  config.optimizer.freeze_regex = r"^backbone/(stem|layer1_\d+)/"
  config.postprocess.update(score_threshold=0.05, iou_threshold=0.5, max_detections=300,
                            pre_nms_top_k=1000)
  # torchvision takes the top 1000 candidates of each FPN level (postprocess option, CONTRACT.md).
  config.postprocess.pre_nms_top_k_per_level = True
  return config


def _config(arch, state_dict, *, image_size=None, min_size=None, max_size=None):
  num_classes = _num_classes(state_dict)
  config = retinanet_config(arch, num_classes=num_classes, image_size=image_size,
                            min_size=min_size, max_size=max_size)
  return config, class_names(num_classes)


def _convert(arch, state_dict, *, config):
  """`(module, variables)` of a torchvision RetinaNet state dict (legacy names upgraded) for a
  resolved `config`: `module.apply(variables, images, train=False)` gives the raw prediction dict
  (`cls_logits` `[B,A,C]`, `box_deltas` `[B,A,4]`, `anchors`), in torchvision's anchor order."""
  from jaxdet import models
  sd = upgrade_legacy_keys(dict(state_dict))
  module = models.build(config.model, num_classes=_num_classes(sd))
  abstract = jax.eval_shape(lambda: module.init(
      jax.random.key(0), jnp.zeros((1, 128, 128, 3), jnp.float32), train=False))
  variables = tv.convert_variables(_retinanet, abstract, sd)
  return module, jax.tree.map(jnp.asarray, variables)


CONVERTER = tv.ModelConverter(archs=tuple(RETINANET_VARIANTS), config=_config, convert=_convert,
                              prepare=upgrade_legacy_keys, min_max_sizes=True)
