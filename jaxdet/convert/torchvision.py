"""torchvision weights -> jaxdet: the name maps of the classifier families, `from_torchvision`
and `convert_file` (behind `jaxdet convert torchvision`).

torchvision's own conventions handled here: VGG-BN convs carry a bias before BatchNorm (folded
into the BN mean), DenseNet files use legacy key names, VGG/AlexNet/GoogLeNet-aux flatten CHW
before their first Linear, GoogLeNet's BatchNorm epsilon is 1e-3 (in the model). The strict
loader is `jaxdet.convert.loader`.
"""

import dataclasses
import functools
import importlib
import pathlib
import pkgutil
import re
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

# Re-exported: the errors and readers belong to the converter's public API.
from jaxdet.convert.loader import (ConversionError, convert_variables, read_weights,  # noqa: F401
                                   to_numpy)

# torchvision's ImageNet normalization in the units of `config.model.preprocess` (CONTRACT.md).
IMAGENET_PREPROCESS = {"value_range": 1.0, "mean": (0.485, 0.456, 0.406),
                       "std": (0.229, 0.224, 0.225), "resize": "letterbox"}
# torchvision's detection defaults (`GeneralizedRCNNTransform`: min_size, max_size).
RCNN_MIN_SIZE, RCNN_MAX_SIZE = 800, 1333


def rcnn_preprocess(*, image_size=None, min_size=None, max_size=None):
  """The `config.model.preprocess` of torchvision's R-CNN family and RetinaNet, and S.

  torchvision's `GeneralizedRCNNTransform`: ImageNet normalization of pixels / 255, then the
  `"rcnn"` resize rule (`jaxdet.data.preprocess`) with `F.interpolate`'s bilinear, padded to a
  multiple of 32 with zeros.

  Args:
    image_size: S: `min_size = max_size = S` (torchvision built with both equal to S).
    min_size: torchvision's `min_size` (default 800); not with `image_size`.
    max_size: torchvision's `max_size` (default 1333); not with `image_size`.

  Returns:
    `(preprocess ConfigDict, S)`: S, the square canvas of batched training and evaluation,
    is `max_size` rounded up to a multiple of 32.

  Raises:
    ConversionError: `image_size` with `min_size`/`max_size`, or a size that is not positive.
  """
  import ml_collections
  if image_size is not None and (min_size is not None or max_size is not None):
    raise ConversionError("give --image-size S (min_size = max_size = S) or --min-size/"
                          "--max-size, not both")
  if image_size is not None:
    min_size = max_size = image_size
  min_size = RCNN_MIN_SIZE if min_size is None else min_size
  max_size = RCNN_MAX_SIZE if max_size is None else max_size
  for name, value in (("min_size", min_size), ("max_size", max_size)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ConversionError(f"{name} must be a positive integer, got {value!r}")
  pre = dict(IMAGENET_PREPROCESS, resize="rcnn", interpolation="torch", min_size=min_size,
             max_size=max_size, size_divisible=32)
  return ml_collections.ConfigDict(pre), -(-max_size // 32) * 32

# ---------------------------------------------------------------------------------------------
# Name maps: module path (without the leaf) -> (torchvision prefix, CHW shape of a flattened
# Linear input or None).


def resnet_name(path):
  """ResNet name map (also the body of torchvision's ResNet-FPN detectors)."""
  top, *rest = path
  if top == "head":
    return "fc", None
  if rest[0] == "stem":
    return {"conv": "conv1", "bn": "bn1"}[rest[1]], None
  stage, index = rest[0][len("layer"):].split("_")
  unit, kind = rest[1], rest[2]
  if unit == "downsample":
    return f"layer{stage}.{index}.downsample.{0 if kind == 'conv' else 1}", None
  return f"layer{stage}.{index}.{kind}{unit[len('conv'):]}", None


def _vgg(depth, use_bn):
  from jaxdet.models.backbones.vgg import CONFIGS
  index, k = {}, 0
  for b, widths in enumerate(CONFIGS[depth]):
    for i in range(len(widths)):
      index[f"conv{b + 1}_{i + 1}"] = k
      k += 3 if use_bn else 2  # conv, [bn,] relu
    k += 1  # max-pool

  def name(path):
    top, *rest = path
    if top == "head":
      return f"classifier.{ {'fc1': 0, 'fc2': 3, 'fc3': 6}[rest[0]] }", (
          (512, 7, 7) if rest[0] == "fc1" else None)
    i = index[rest[0]]
    return f"features.{i + 1 if rest[1:] == ['bn'] else i}", None
  return name


def _alexnet(path):
  top, *rest = path
  if top == "head":
    return f"classifier.{ {'fc1': 1, 'fc2': 4, 'fc3': 6}[rest[0]] }", (
        (256, 6, 6) if rest[0] == "fc1" else None)
  return f"features.{ {'conv1': 0, 'conv2': 3, 'conv3': 6, 'conv4': 8, 'conv5': 10}[rest[0]] }", None


def _googlenet(path):
  # jaxdet names mirror torchvision's; `branch2_0` is the Sequential child `branch2.0`.
  rest = path[1:]
  chw = (128, 4, 4) if rest[-1] == "fc1" else None
  return ".".join(p.replace("_", ".") if p.startswith("branch") else p for p in rest), chw


def _densenet(path):
  top, *rest = path
  if top == "head":
    return "classifier", None
  if rest[0] == "stem":
    return {"conv": "features.conv0", "bn": "features.norm0"}[rest[1]], None
  if rest[0] == "norm5":
    return "features.norm5", None
  kind = "norm" if rest[-1] == "bn" else "conv"
  if rest[0].startswith("transition"):
    return f"features.{rest[0]}.{kind}", None
  block, layer, unit = re.fullmatch(r"denseblock(\d+)_layer(\d+)_unit(\d)", rest[0]).groups()
  return f"features.denseblock{block}.denselayer{layer}.{kind}{unit}", None


def _name_map(arch: str) -> Callable | None:
  """The name map of a torchvision classifier arch; None for any other name."""
  from jaxdet.models import backbones
  if arch not in backbones.BACKBONES:
    return None
  if arch.startswith("resnet"):
    return resnet_name
  if arch.startswith("vgg"):
    return _vgg(int(arch[3:5]), arch.endswith("_bn"))
  return {"alexnet": _alexnet, "googlenet": _googlenet}.get(arch) or (
      _densenet if arch.startswith("densenet") else None)


# torchvision key of the logits layer's weight (its rows give num_classes).
_LOGITS_KEY = {"resnet": "fc.weight", "vgg": "classifier.6.weight", "alexnet": "classifier.6.weight",
               "googlenet": "fc.weight", "densenet": "classifier.weight"}

# Pretrained DenseNet files use the old names `norm.1`, `conv.2`, ... (torchvision renames them
# when loading; so do we).
_DENSENET_LEGACY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var"
    r"|num_batches_tracked))$")


def classifier_archs() -> tuple[str, ...]:
  """The classifier architectures `from_torchvision` converts."""
  from jaxdet.models import backbones
  return tuple(a for a in backbones.BACKBONES if _name_map(a) is not None)


@dataclasses.dataclass(frozen=True)
class ModelConverter:
  """How one torchvision model family (beyond the classifiers) converts.

  A module `jaxdet/convert/torchvision_<family>.py` defines one as `CONVERTER`; `converters()`
  discovers it, so adding a family touches no other converter file.

  Attributes:
    archs: the torchvision architecture names it converts.
    config: `(arch, state_dict, *, image_size: int | None, **sizes) -> (config, class_names)`:
      the resolved training config (`base_config()` + the family's model, preprocess and
      postprocess settings; `image_size=None`: the family's default), with the number of classes
      read from the state dict; `class_names` a list of str, one per class index. `sizes`:
      `min_size`, `max_size` for a family with `min_max_sizes`.
    convert: `(arch, state_dict, *, config) -> (module, variables)` for that config (strict:
      a missing/unexpected/mis-shaped key raises `ConversionError` naming it).
    prepare: optional `state_dict -> state_dict` applied first (legacy key names).
    min_max_sizes: the family resizes by torchvision's min/max-size rule (`rcnn_preprocess`):
      its config takes `min_size` and `max_size`.
  """
  archs: tuple[str, ...]
  config: Callable
  convert: Callable
  prepare: Callable = lambda state_dict: dict(state_dict)
  min_max_sizes: bool = False


@functools.cache
def converters() -> dict[str, ModelConverter]:
  """arch -> `ModelConverter` of every `jaxdet/convert/torchvision_*.py` module's `CONVERTER`."""
  import jaxdet.convert
  found = {}
  for info in sorted(pkgutil.iter_modules(jaxdet.convert.__path__), key=lambda i: i.name):
    if not info.name.startswith("torchvision_"):
      continue
    converter = importlib.import_module(f"jaxdet.convert.{info.name}").CONVERTER
    for arch in converter.archs:
      if arch in found:
        raise ValueError(f"torchvision arch {arch!r} is registered by two converter modules")
      found[arch] = converter
  return found


def archs() -> tuple[str, ...]:
  """Every architecture `from_torchvision` converts (classifiers and the `converters()`)."""
  return classifier_archs() + tuple(converters())


def _fold_conv_bias_into_bn(state_dict: dict, conv_prefixes) -> dict:
  """VGG-BN: torchvision's convs before BatchNorm have a bias, jaxdet's ConvBN has none.
  BN(conv(x) + b) = BN'(conv(x)) with running_mean' = running_mean - b (exact in inference; in
  training the batch mean absorbs b)."""
  sd = dict(state_dict)
  for conv, bn in conv_prefixes:
    bias = sd.pop(f"{conv}.bias", None)
    if bias is None:
      raise ConversionError(f"missing key {conv + '.bias'!r} in the state dict")
    mean_key = f"{bn}.running_mean"
    if mean_key not in sd:
      raise ConversionError(f"missing key {mean_key!r} in the state dict")
    sd[mean_key] = to_numpy(sd[mean_key]).astype(np.float32) - to_numpy(bias).astype(np.float32)
  return sd


def _prepare(arch: str, state_dict: Mapping) -> dict:
  sd = dict(state_dict)
  if arch.startswith("densenet"):
    sd = {_DENSENET_LEGACY.sub(r"\1\2", k): v for k, v in sd.items()}
  if arch.startswith("vgg") and arch.endswith("_bn"):
    from jaxdet.models.backbones.vgg import CONFIGS
    prefixes, k = [], 0
    for widths in CONFIGS[int(arch[3:5])]:
      for _ in widths:
        prefixes.append((f"features.{k}", f"features.{k + 1}"))
        k += 3
      k += 1
    sd = _fold_conv_bias_into_bn(sd, prefixes)
  return sd


def _family(arch: str) -> str:
  return next(f for f in _LOGITS_KEY if arch.startswith(f))


def from_torchvision(arch: str, state_dict: Mapping[str, Any], *, num_classes: int | None = None,
                     config=None):
  """A jaxdet classifier with torchvision's weights.

  Args:
    arch: torchvision architecture name (`archs()`: alexnet, vgg11..vgg19[_bn], googlenet,
      resnet18..resnet152, densenet121..densenet201, retinanet_resnet50_fpn[_v2]).
    state_dict: torchvision `state_dict()` (key -> NumPy array or torch tensor).
    num_classes: classifiers: logits per image; default: read from the state dict's last Linear
      layer (other families read it from the state dict).
    config: classifiers: optional model ConfigDict with backbone options (GoogLeNet:
      `transform_input`, default True as torchvision's pretrained GoogLeNet); other families:
      optional resolved config (default: the family's `ModelConverter.config`).

  Returns:
    `(module, variables)`: `module.apply(variables, images, train=False)` maps float32 NHWC
    images, normalized as `IMAGENET_PREPROCESS` says, to logits float32 `[N, num_classes]` (a
    classifier) or the raw prediction dict (a detector).

  Raises:
    ConversionError: unknown arch, or a missing/unexpected/mis-shaped key.
  """
  from jaxdet.models import backbones
  if arch in converters():
    converter = converters()[arch]
    sd = converter.prepare(state_dict)
    if config is None:
      config, _ = converter.config(arch, sd, image_size=None)
    return converter.convert(arch, sd, config=config)
  if _name_map(arch) is None:
    raise ConversionError(f"unknown torchvision arch {arch!r}; expected one of {archs()}")
  sd = _prepare(arch, state_dict)
  if num_classes is None:
    logits_key = _LOGITS_KEY[_family(arch)]
    num_classes = int(to_numpy(sd[logits_key]).shape[0]) if logits_key in sd else 1000
  module = backbones.build_classifier(arch, num_classes, config=config)
  abstract = jax.eval_shape(lambda: module.init(
      jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.float32), train=False))
  variables = convert_variables(_name_map(arch), abstract, sd)
  return module, jax.tree.map(jnp.asarray, variables)


def classifier_config(arch: str, *, num_classes: int, image_size: int = 224):
  """The resolved config of a converted classifier: `base_config()` with `model` =
  `{name: "classifier", backbone: arch, num_classes, preprocess}` (+ `transform_input` for
  GoogLeNet)."""
  import ml_collections
  from jaxdet.train import config as config_lib
  config = config_lib.base_config()
  config.image_size = image_size
  config.model = ml_collections.ConfigDict({
      "name": "classifier", "backbone": arch, "num_classes": num_classes,
      "preprocess": ml_collections.ConfigDict(IMAGENET_PREPROCESS)})
  if arch == "googlenet":
    config.model.transform_input = True
  return config


def convert_file(arch: str, weights, output, *, image_size: int | None = None,
                 min_size: int | None = None, max_size: int | None = None, overrides=()):
  """Converts a torchvision weights file into a checkpoint folder (what `jaxdet convert
  torchvision` runs).

  Args:
    arch: torchvision architecture name.
    weights: `.pth` / `.pt` (needs torch) or `.safetensors` file.
    output: checkpoint folder to create (`config.json`, `checkpoints/latest/0`).
    image_size: square input size S of the config (default: the family's, `ModelConverter`).
    min_size: torchvision's `min_size` of the R-CNN family and RetinaNet (default 800).
    max_size: torchvision's `max_size` of the R-CNN family and RetinaNet (default 1333).
    overrides: `--config.KEY=VALUE` arguments, applied before building the model.

  Returns:
    The step folder written.
  """
  from jaxdet.convert.checkpoint import write_checkpoint
  from jaxdet.train import config as config_lib
  if arch not in archs():
    raise ConversionError(f"unknown torchvision arch {arch!r}; expected one of {archs()}")
  sizes = {k: v for k, v in (("min_size", min_size), ("max_size", max_size)) if v is not None}
  if sizes and not (arch in converters() and converters()[arch].min_max_sizes):
    raise ConversionError(f"--min-size/--max-size are for the R-CNN family and RetinaNet "
                          f"(torchvision's min/max-size resize); {arch} takes --image-size")
  sd = read_weights(weights)
  parse = lambda c: config_lib.apply_overrides(c, config_lib.parse_override_args(list(overrides)))
  source = {"framework": "torchvision", "arch": arch, "weights": pathlib.Path(weights).name}
  if arch in converters():
    converter = converters()[arch]
    sd = converter.prepare(sd)
    config, names = converter.config(arch, sd, image_size=image_size, **sizes)
    config = parse(config)
    _, variables = converter.convert(arch, sd, config=config)
  else:
    logits_key = _LOGITS_KEY[_family(arch)]
    num_classes = int(sd[logits_key].shape[0]) if logits_key in sd else 1000
    config = parse(classifier_config(arch, num_classes=num_classes, image_size=image_size or 224))
    _, variables = from_torchvision(arch, sd, num_classes=num_classes, config=config.model)
    names = range(num_classes)
  return write_checkpoint(output, config, variables, class_names=[str(n) for n in names],
                          source=source)
