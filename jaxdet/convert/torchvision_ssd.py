"""torchvision SSD -> jaxdet: `ssd300_vgg16` onto jaxdet's `ssd` family.

Name map: `backbone.features.*` (VGG-16 up to conv4_3), `backbone.extra.0.*` (pool4, conv5_x and
fc6 / fc7 in `extra.0.7`), `backbone.extra.{1..4}` (extra layers), `backbone.scale_weight` (the
L2 norm's scale), `head.{classification,regression}_head.module_list.{level}`. torchvision's
label 0 is the background: its label `l` is jaxdet class `l - 1` (class names shifted alike).
The config carries SSD300's preprocessing (stretch to 300 x 300, torchvision's mean, std 1/255)
and its postprocess (score 0.01, NMS 0.45, top 400 per class, 200 detections).
"""

import re

import jax
import jax.numpy as jnp

from jaxdet.convert import torchvision as tv
from jaxdet.convert.loader import to_numpy
from jaxdet.convert.torchvision_retinanet import COCO_CATEGORIES

_POOL4 = 23  # index of pool4 in torchvision's VGG-16 `features` (extra.0 starts there)


_VGG16_NAMES = tv._vgg(16, False)  # pylint: disable=protected-access  (the classifier's map)


def _ssd(path):
  top, *rest = path
  if top == "backbone":
    if rest[0] in ("fc6", "fc7"):
      return f"backbone.extra.0.7.{1 if rest[0] == 'fc6' else 3}", None
    k = int(_VGG16_NAMES(("backbone", rest[0]))[0].split(".")[1])  # "features.{k}"
    return (f"backbone.features.{k}" if k < _POOL4 else f"backbone.extra.0.{k - _POOL4}"), None
  if top == "l2norm":
    return "backbone.l2norm", None
  m = re.fullmatch(r"extra(\d+)_(reduce|conv)", top)
  if m:
    return f"backbone.extra.{int(m.group(1)) + 1}.{0 if m.group(2) == 'reduce' else 2}", None
  head, level = re.fullmatch(r"(cls|box)_head(\d+)", top).groups()
  kind = "classification_head" if head == "cls" else "regression_head"
  return f"head.{kind}.module_list.{level}", None


def prepare(state_dict):
  """The state dict with the L2 norm's `backbone.scale_weight` renamed `backbone.l2norm.weight`
  (the loader reads a module prefix + leaf)."""
  sd = dict(state_dict)
  if "backbone.scale_weight" in sd:
    sd["backbone.l2norm.weight"] = sd.pop("backbone.scale_weight")
  return sd


def _num_classes(state_dict) -> int:
  """Foreground classes C (torchvision's num_classes - 1)."""
  key = "head.classification_head.module_list.0.bias"
  if key not in state_dict:
    raise tv.ConversionError(f"missing key {key!r} in the state dict")
  per_cell = 4  # SSD300's first level: 2 + 2 * len([2]) default boxes
  return int(to_numpy(state_dict[key]).shape[0]) // per_cell - 1


def class_names(num_classes: int) -> list[str]:
  """torchvision's COCO names (background dropped) for 90 classes, else its label indices."""
  if num_classes + 1 == len(COCO_CATEGORIES):
    return list(COCO_CATEGORIES[1:])
  return [str(i + 1) for i in range(num_classes)]


def ssd_config(arch: str, *, num_classes: int, image_size: int = 300):
  """The resolved training config of a converted torchvision SSD300."""
  del arch, num_classes
  from jaxdet import models
  from jaxdet.models.detectors import ssd
  from jaxdet.train import config as config_lib
  config = config_lib.base_config()
  config.image_size = image_size
  config.model = models.default_config("ssd")
  # torchvision's transform: normalize, then stretch to 300 x 300 with F.interpolate's bilinear.
  config.model.preprocess.interpolation = "torch"
  # torchvision fine-tunes with the first VGG block fixed (trainable_backbone_layers=4).
  config.optimizer.freeze_regex = r"^backbone/conv1_\d+/"
  config.postprocess.update(ssd.POSTPROCESS)
  return config


def _config(arch, state_dict, *, image_size=None):
  num_classes = _num_classes(state_dict)
  return (ssd_config(arch, num_classes=num_classes, image_size=image_size or 300),
          class_names(num_classes))


def _convert(arch, state_dict, *, config):
  """`(module, variables)` of a torchvision SSD300 state dict for a resolved `config`."""
  del arch
  from jaxdet import models
  module = models.build(config.model, num_classes=_num_classes(state_dict))
  abstract = jax.eval_shape(lambda: module.init(
      jax.random.key(0), jnp.zeros((1, 300, 300, 3), jnp.float32), train=False))
  variables = tv.convert_variables(_ssd, abstract, state_dict)
  return module, jax.tree.map(jnp.asarray, variables)


CONVERTER = tv.ModelConverter(archs=("ssd300_vgg16",), config=_config, convert=_convert,
                              prepare=prepare)
