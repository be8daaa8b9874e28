"""Semantic segmentation families (FCN), with their own registry of the detector registry's shape.

A family is a module of this package (found by discovery, modules starting with `_` excluded) or
any object passed to `register`; its `config.model` has `task = "segmentation"`. Masks follow
one convention: int class ids per pixel, 0 = background, k + 1 = detection label k, 255 = ignore;
a model over C object classes has K = C + 1 classes.

  segmentation.names()                      -> ("fcn",)
  segmentation.get("fcn")                   -> the family (its module)
  segmentation.build(config.model, num_classes=K)
  segmentation.is_segmentation(config.model) -> bool
"""

from typing import Any, Protocol, runtime_checkable

from jaxdet.models import registry as _detector_registry

DISCOVER_PACKAGE = "jaxdet.models.segmentation"
TASK = "segmentation"
IGNORE_INDEX = 255  # mask value excluded from the loss and the metrics


@runtime_checkable
class SegmentationFamily(Protocol):
  """What a segmentation family provides (a module satisfies it with module-level functions).

  Attributes:
    name: the registered name, also `config.model.name` of its configs.
  """
  name: str

  def default_config(self) -> Any:
    """The default `config.model` ConfigDict (`name`, `task = "segmentation"`)."""

  def test_config(self) -> Any:
    """A tiny `config.model` (fast on CPU at 64 px) for tests."""

  def build(self, config, *, num_classes: int) -> Any:
    """The Linen module for K = `num_classes` classes (background included).

    Called as `module.apply(variables, images float32 [B,H,W,3], train=bool, mutable=[...],
    rngs={"dropout": ...})`; returns `{"out": logits float32 [B,H,W,K]}` plus `"aux"` (same
    shape) when the family has an auxiliary head, at the input resolution.
    """

  def loss_fn(self, preds, batch, *, config) -> tuple[Any, dict]:
    """`(loss float32 [], metrics dict of float32 [])` from train-mode predictions and the batch's
    `mask` int32 `[B,H,W]` (255 = ignore); finite when every pixel is ignored."""


_KEYWORDS = {"default_config": (), "test_config": (), "build": ("num_classes",),
             "loss_fn": ("config",)}
_FAMILIES: dict[str, SegmentationFamily] = {}
_discovered = False


def _check(family) -> None:
  _detector_registry._check(family, kind="segmentation", keywords=_KEYWORDS,  # pylint: disable=protected-access
                            protocol=SegmentationFamily)


def register(family, *, replace: bool = False):
  """Adds a segmentation family (a module, class or instance; usable as a decorator).

  Raises:
    TypeError: a protocol member is missing or malformed (the message names it).
    ValueError: the name is taken and `replace` is False.
  """
  _check(family)
  _discover()
  old = _FAMILIES.get(family.name)
  if old is not None and old is not family and not replace:
    raise ValueError(f"segmentation family {family.name!r} is already registered")
  _FAMILIES[family.name] = family
  return family


def unregister(name: str) -> None:
  """Removes a family registered with `register` (tests)."""
  _FAMILIES.pop(name, None)


def _discover() -> None:
  global _discovered
  if _discovered:
    return
  _discovered = True
  try:
    for module in _detector_registry.family_modules(DISCOVER_PACKAGE, kind="segmentation"):
      register(module)
  except BaseException:
    _discovered = False
    raise


def names() -> tuple[str, ...]:
  """The registered segmentation family names, sorted."""
  _discover()
  return tuple(sorted(_FAMILIES))


def get(name: str) -> SegmentationFamily:
  """The family registered as `name`; ValueError listing the known ones otherwise."""
  _discover()
  family = _FAMILIES.get(name)
  if family is None:
    raise ValueError(f"unknown segmentation model {name!r}; expected one of {names()}")
  return family


def is_segmentation(model_config) -> bool:
  """Whether `config.model` describes a segmentation model (`task == "segmentation"`)."""
  return model_config is not None and model_config.get("task", "detection") == TASK


def default_config(name: str):
  """Default `config.model` of the named family, with the default `preprocess` block
  (`jaxdet.data.preprocess`) unless the family sets its own."""
  config = get(name).default_config()
  if "preprocess" not in config:
    from jaxdet.data import preprocess  # pylint: disable=g-import-not-at-top
    config.preprocess = preprocess.default_config()
  return config


def build(model_config, *, num_classes: int):
  """The Linen module of `model_config` for K = `num_classes` classes (background included,
  >= 2)."""
  if num_classes < 2:
    raise ValueError(f"a segmentation model needs num_classes >= 2 (background included), "
                     f"got {num_classes}")
  return get(model_config.name).build(model_config, num_classes=num_classes)


__all__ = ["IGNORE_INDEX", "SegmentationFamily", "TASK", "build", "default_config", "get",
           "is_segmentation", "names", "register", "unregister"]
