"""torchvision Faster R-CNN -> jaxdet: `fasterrcnn_resnet50_fpn` (v1) and `_v2` onto `faster_rcnn`.

Name map: backbone (`backbone.body.*`, ResNet-50), FPN (`backbone.fpn.*`, v2 with BatchNorm),
RPN head (`rpn.head.*`), box head (`roi_heads.box_head.*`: fc6/fc7, or v2's four conv+BN and one
Linear; the first Linear's CHW-flattened input is permuted to jaxdet's HWC) and predictor
(`roi_heads.box_predictor.*`). torchvision's label 0 is the background: jaxdet class c is
torchvision label c + 1 (a 91-class COCO model has the 90 names after "__background__").
The config carries torchvision's RPN and RoI settings, its preprocessing and a postprocess that
lets every candidate above the score threshold into the per-class NMS, as torchvision does.
"""

import jax
import jax.numpy as jnp
import ml_collections

from jaxdet.convert import torchvision as tv
from jaxdet.convert.loader import to_numpy
from jaxdet.convert.torchvision_retinanet import COCO_CATEGORIES

# arch -> faster_rcnn config fields of the variant.
FASTER_RCNN_VARIANTS = {
    "fasterrcnn_resnet50_fpn": {"fpn_norm": "none", "rpn_convs": 1, "box_head": "two_mlp",
                                "frozen_bn": True},
    "fasterrcnn_resnet50_fpn_v2": {"fpn_norm": "batch", "rpn_convs": 2, "box_head": "conv_fc",
                                   "frozen_bn": False},
}
_CLS_KEY = "roi_heads.box_predictor.cls_score.bias"


def _name_map(config):
  chw = (config.fpn_features, config.roi_output_size, config.roi_output_size)
  num_convs = config.box_head_convs

  def name(path):
    top, *rest = path
    if top == "backbone":
      prefix, _ = tv.resnet_name(path)
      return f"backbone.body.{prefix}", None
    if top == "fpn":
      kind = "inner_blocks" if rest[0].startswith("inner") else "layer_blocks"
      unit = 1 if rest[1:] == ["bn"] else 0  # v1: a Conv; v2: ConvBN's conv / bn
      return f"backbone.fpn.{kind}.{int(rest[0][-1]) - 2}.{unit}", None
    if top == "rpn_head":
      if rest[0].startswith("conv"):
        return f"rpn.head.conv.{rest[0][4:]}.0", None
      return f"rpn.head.{'cls_logits' if rest[0] == 'cls' else 'bbox_pred'}", None
    if top == "box_head":
      if rest[0].startswith("conv"):
        return f"roi_heads.box_head.{rest[0][4:]}.{0 if rest[1] == 'conv' else 1}", None
      if config.box_head == "conv_fc":  # Sequential: convs, Flatten, Linear, ReLU
        return f"roi_heads.box_head.{num_convs + 1}", chw
      return f"roi_heads.box_head.{rest[0]}", chw if rest[0] == "fc6" else None
    return f"roi_heads.box_predictor.{top}", None

  return name


def _num_classes(state_dict) -> int:
  """Foreground classes C (torchvision's num_classes counts the background too)."""
  if _CLS_KEY not in state_dict:
    raise tv.ConversionError(f"missing key {_CLS_KEY!r} in the state dict")
  return int(to_numpy(state_dict[_CLS_KEY]).shape[0]) - 1


def class_names(num_classes: int) -> list[str]:
  """torchvision's COCO names without the background for a 90-class model, else the torchvision
  label numbers 1..C as strings."""
  if num_classes + 1 == len(COCO_CATEGORIES):
    return list(COCO_CATEGORIES[1:])
  return [str(i + 1) for i in range(num_classes)]


def faster_rcnn_config(arch: str, *, num_classes: int, image_size: int | None = None,
                       min_size: int | None = None, max_size: int | None = None):
  """The resolved config of a converted torchvision Faster R-CNN (`base_config()` plus the
  variant's model settings, preprocessing and torchvision's RoIHeads postprocess)."""
  from jaxdet import models
  from jaxdet.train import config as config_lib
  config = config_lib.base_config()
  # torchvision's transform: min/max-size resize, pad to 32 (`--image-size S`: both sizes S).
  preprocess, config.image_size = tv.rcnn_preprocess(image_size=image_size, min_size=min_size,
                                                     max_size=max_size)
  config.model = models.default_config("faster_rcnn")
  config.model.update(backbone="resnet50", **FASTER_RCNN_VARIANTS[arch])
  config.model.preprocess = preprocess
  config.optimizer.freeze_regex = r"^backbone/(stem|layer1_\d+)/"  # trainable_backbone_layers=3
  # torchvision thresholds every (RoI, class) score and runs the per-class NMS on all of them:
  # a top-k that keeps every candidate is the same.
  config.postprocess.update(
      score_threshold=0.05, iou_threshold=0.5, max_detections=100,
      pre_nms_top_k=config.model.rpn_post_nms_top_n_test * num_classes)
  config.postprocess.pre_nms_top_k_per_level = False
  return config


def _config(arch, state_dict, *, image_size=None, min_size=None, max_size=None):
  num_classes = _num_classes(state_dict)
  config = faster_rcnn_config(arch, num_classes=num_classes, image_size=image_size,
                              min_size=min_size, max_size=max_size)
  return config, class_names(num_classes)


def _convert(arch, state_dict, *, config):
  """`(module, variables)` of a torchvision Faster R-CNN state dict for a resolved `config`."""
  from jaxdet import models
  sd = dict(state_dict)
  module = models.build(config.model, num_classes=_num_classes(sd))
  abstract = jax.eval_shape(lambda: module.init(
      jax.random.key(0), jnp.zeros((1, 128, 128, 3), jnp.float32), train=False))
  d = models.default_config("faster_rcnn")
  resolved = ml_collections.ConfigDict({k: config.model.get(k, d[k]) for k in d.keys()})
  variables = tv.convert_variables(_name_map(resolved), abstract, sd)
  return module, jax.tree.map(jnp.asarray, variables)


CONVERTER = tv.ModelConverter(archs=tuple(FASTER_RCNN_VARIANTS), config=_config, convert=_convert,
                              min_max_sizes=True)
