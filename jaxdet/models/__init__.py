"""Detectors (Flax Linen): `build(config.model, num_classes=...)` plus per-detector loss/decode.

Each detector module (`retinanet`, `yolo`) exposes `default_config()`, `build(config, *,
num_classes)`, `loss_fn(preds, batch, *, config)` and `decode(preds, *, image_size)`; use
`get_detector(name)` to reach them from a config.
"""

import importlib
import types

from jaxdet.models.postprocess import postprocess

DETECTORS = ("retinanet", "yolo")


def get_detector(name: str) -> types.ModuleType:
  """The detector module (`jaxdet.models.retinanet` or `.yolo`) with build/loss_fn/decode."""
  if name not in DETECTORS:
    raise ValueError(f"unknown model {name!r}; expected one of {DETECTORS}")
  return importlib.import_module(f"jaxdet.models.{name}")


def default_config(name: str):
  """Default `config.model` ConfigDict of the named detector."""
  return get_detector(name).default_config()


def build(model_config, *, num_classes: int):
  """The Linen module described by `model_config` (`config.model`).

  Args:
    model_config: ConfigDict with `name` in `DETECTORS` and that detector's fields.
    num_classes: number of foreground classes C (>= 1).

  Returns:
    A module called as `module.apply(variables, images float32 [B,S,S,3], train=bool,
    mutable=[...])` returning the detector's raw prediction dict.
  """
  if num_classes < 1:
    raise ValueError(f"num_classes must be >= 1, got {num_classes}")
  return get_detector(model_config.name).build(model_config, num_classes=num_classes)


def loss_fn(preds, batch, *, config):
  """Dispatches to the detector's `loss_fn` by `config.name` (model config)."""
  cfg = config.model if "model" in config else config
  return get_detector(cfg.name).loss_fn(preds, batch, config=cfg)


def decode(preds, *, model_config, image_size):
  """Dispatches to the detector's `decode` by `model_config.name`."""
  return get_detector(model_config.name).decode(preds, image_size=image_size)


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


__all__ = ["DETECTORS", "from_torchvision", "build", "decode", "default_config", "frozen_param_patterns",
           "get_detector", "loss_fn", "postprocess"]
