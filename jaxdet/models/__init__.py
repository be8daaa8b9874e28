"""Detectors (Flax Linen): one registry of detector families plus shared post-processing.

Every family (a module of `jaxdet.models.detectors`, see `jaxdet.models.registry.DetectorFamily`)
provides `default_config()`, `test_config()`, `build(config, *, num_classes)`,
`loss_fn(preds, batch, *, config)` and `decode(preds, *, image_size, config=None)`; reach it from a
config with `get_detector(config.model.name)`. Family modules are also attributes of this package
by their registered name (`from jaxdet.models import retinanet`).
"""

import importlib.util

from jaxdet.models import registry
from jaxdet.models.postprocess import postprocess


def get_detector(name: str) -> registry.DetectorFamily:
  """The detector family registered as `name` (old names such as "yolo" resolve to theirs).

  Raises:
    ValueError: unknown name (the message lists the registered ones).
  """
  return registry.get(name)


def default_config(name: str):
  """Default `config.model` ConfigDict of the named detector (its `name` is the canonical one), with the default
  `preprocess` block (`jaxdet.data.preprocess`) unless the family sets its own."""
  config = get_detector(name).default_config()
  if "preprocess" not in config:
    from jaxdet.data import preprocess  # pylint: disable=g-import-not-at-top
    config.preprocess = preprocess.default_config()
  return config


def build(model_config, *, num_classes: int):
  """The Linen module described by `model_config` (`config.model`).

  Args:
    model_config: ConfigDict with a registered `name` and that detector's fields.
    num_classes: number of foreground classes C (>= 1).

  Returns:
    A module called as `module.apply(variables, images float32 [B,S,S,3], train=bool,
    targets=None, mutable=[...], rngs={...})` returning the detector's raw prediction dict.
  """
  if num_classes < 1:
    raise ValueError(f"num_classes must be >= 1, got {num_classes}")
  return get_detector(model_config.name).build(model_config, num_classes=num_classes)


def frozen_param_patterns(model_config) -> tuple[str, ...]:
  """Regexes (over '/'-joined param paths, e.g. 'backbone/stem/bn/scale') to exclude from training.

  With `frozen_bn=True` the backbone's BatchNorm runs in inference mode and its scale/bias must
  not be updated either (torchvision FrozenBatchNorm2d); the trainer zeroes their updates by path.
  """
  if model_config.get("frozen_bn", False):
    return (r"^backbone/(.*/)?bn/(scale|bias)$",)
  return ()


def from_torchvision(arch: str, state_dict, **options):
  """`(module, variables)` of jaxdet's `arch` holding a torchvision state dict (NumPy arrays or
  torch tensors); see `jaxdet.convert.torchvision.from_torchvision`."""
  from jaxdet.convert import torchvision as tv_convert  # the converter imports the models
  return tv_convert.from_torchvision(arch, state_dict, **options)


def __getattr__(name):
  # `from jaxdet.models import retinanet`: family modules by name, imported on first use so that
  # `import jaxdet.models` does not import every detector. Only names of `detectors/` files reach
  # the registry (submodule imports of this package also pass through here).
  if not name.startswith("_") and importlib.util.find_spec(f"{registry.DISCOVER_PACKAGE}.{name}"):
    return registry.get(name)
  raise AttributeError(f"module 'jaxdet.models' has no attribute {name!r}")


__all__ = ["build", "default_config", "from_torchvision", "frozen_param_patterns", "get_detector",
           "postprocess", "registry"]
