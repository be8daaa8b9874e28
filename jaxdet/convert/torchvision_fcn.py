"""torchvision FCN -> jaxdet: `fcn_resnet50` and `fcn_resnet101` onto jaxdet's FCN
(`jaxdet.models.segmentation.fcn`, ResNet body with layer3/4 dilated).

Name map: `backbone.*` is the ResNet's (torchvision's IntermediateLayerGetter keeps the ResNet's
names, without `fc`), `classifier.{0,1,4}` the FCNHead's conv, BatchNorm and 1x1 output conv,
`aux_classifier.*` the auxiliary head's (present when the model was built with
`aux_loss=True`; the config's `model.aux` follows the state dict).
"""

import jax
import jax.numpy as jnp
import ml_collections

from jaxdet.convert import torchvision as tv
from jaxdet.convert.loader import to_numpy

# torchvision's Pascal VOC names of its COCO-with-VOC-labels segmentation weights.
VOC_CATEGORIES = (
    "__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep",
    "sofa", "train", "tvmonitor")

ARCHS = {"fcn_resnet50": "resnet50", "fcn_resnet101": "resnet101"}
_HEADS = {"head": "classifier", "aux_head": "aux_classifier"}
_HEAD_INDEX = {"conv": 0, "bn": 1}  # FCNHead = Sequential(conv, bn, relu, dropout, conv)


def _fcn(path):
  top, *rest = path
  if top == "backbone":
    prefix, _ = tv.resnet_name(path)
    return f"backbone.{prefix}", None
  if rest[0] == "out":
    return f"{_HEADS[top]}.4", None
  return f"{_HEADS[top]}.{_HEAD_INDEX[rest[1]]}", None


def _num_classes(state_dict) -> int:
  key = "classifier.4.bias"
  if key not in state_dict:
    raise tv.ConversionError(f"missing key {key!r} in the state dict")
  return int(to_numpy(state_dict[key]).shape[0])


def class_names(num_classes: int) -> list[str]:
  """torchvision's VOC names for a 21-class model, else "background" and the indices."""
  if num_classes == len(VOC_CATEGORIES):
    return list(VOC_CATEGORIES)
  return ["background"] + [str(i) for i in range(1, num_classes)]


def fcn_config(arch: str, *, aux: bool = True, image_size: int = 520):
  """The resolved config of a converted torchvision FCN: `base_config()` with `model` = FCN on
  the arch's ResNet, torchvision's preprocessing (pixels / 255, ImageNet mean/std) and
  S = `image_size` (torchvision's VOC/COCO evaluation resizes to 520)."""
  from jaxdet.models import segmentation
  from jaxdet.train import config as config_lib
  if arch not in ARCHS:
    raise tv.ConversionError(f"unknown torchvision FCN arch {arch!r}; expected one of "
                             f"{tuple(ARCHS)}")
  config = config_lib.base_config()
  config.image_size = image_size
  config.model = segmentation.default_config("fcn")
  config.model.update(backbone=ARCHS[arch], aux=aux)
  config.model.preprocess = ml_collections.ConfigDict(tv.IMAGENET_PREPROCESS)
  return config


def _config(arch, state_dict, *, image_size=None):
  num_classes = _num_classes(state_dict)
  aux = any(k.startswith("aux_classifier.") for k in state_dict)
  return (fcn_config(arch, aux=aux, image_size=image_size or 520), class_names(num_classes))


def _convert(arch, state_dict, *, config):
  """`(module, variables)` for a resolved `config`: `module.apply(variables, images,
  train=False)` gives `{"out": [B,H,W,K], "aux": ...}` logits, torchvision's `model(x)`."""
  del arch
  from jaxdet.models import segmentation
  module = segmentation.build(config.model, num_classes=_num_classes(state_dict))
  abstract = jax.eval_shape(lambda: module.init(
      jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.float32), train=False))
  variables = tv.convert_variables(_fcn, abstract, state_dict)
  return module, jax.tree.map(jnp.asarray, variables)


CONVERTER = tv.ModelConverter(archs=tuple(ARCHS), config=_config, convert=_convert)
