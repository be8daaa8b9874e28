"""The registry of detector families and the `DetectorFamily` protocol each one implements.

A family is a module of `jaxdet.models.detectors` (found by module discovery: adding a detector
is adding one module there) or any object passed to `register`. Registration checks the protocol
and fails naming the missing or malformed member, so a half-written family never reaches a
training run.

  registry.names()             -> ("retinanet", "yolo_anchor_free")
  registry.get("retinanet")    -> the family (its module)
  registry.canonical_name(n)   -> n with old names resolved ("yolo" -> "yolo_anchor_free")
"""

import importlib
import inspect
import pkgutil
from typing import Any, Protocol, runtime_checkable

# Old family names kept so that configs and checkpoints written under them keep loading; new
# code uses the canonical name (the plain YOLO names belong to the classic YOLOv1/v3/v4 to come).
ALIASES = {"yolo": "yolo_anchor_free"}

DISCOVER_PACKAGE = "jaxdet.models.detectors"


def model_config(config):
  """`config.model` of a full experiment config, or `config` itself when it is already the model
  block (a family's `loss_fn`/`decode` accept either)."""
  return config.model if "model" in config else config


@runtime_checkable
class DetectorFamily(Protocol):
  """What a detector family provides (a module satisfies it with module-level functions).

  Attributes:
    name: the registered name, also `config.model.name` of its configs.
  """
  name: str

  def default_config(self) -> Any:
    """The default `config.model` ConfigDict (its `name` is the family's name)."""

  def test_config(self) -> Any:
    """A tiny `config.model` (fast on CPU at 64 px) for the contract and export tests."""

  def build(self, config, *, num_classes: int) -> Any:
    """The Linen module for `config` (`config.model`) and C = `num_classes` foreground classes.

    Called as `module.apply(variables, images float32 [B,S,S,3], train=bool, targets=None,
    mutable=[...], rngs={...})` and returns the raw prediction dict. In train mode `targets` may
    be the batch's `{"boxes" [B,M,4] xyxy, "classes" [B,M] int32, "box_mask" [B,M] bool}` and
    `rngs` holds named streams (`"dropout"`, `"sampler"`); families that need neither ignore them.
    """

  def loss_fn(self, preds, batch, *, config) -> tuple[Any, dict]:
    """`(loss float32 [], metrics dict of float32 [])` from train-mode predictions and the batch
    (`boxes`, `classes`, `box_mask`); finite with no ground truth at all."""

  def decode(self, preds, *, image_size, config=None) -> tuple[Any, Any]:
    """`(boxes_xyxy, scores)`: boxes float32 `[B,A,4]` (class-agnostic) or `[B,A,C,4]`
    (class-specific) in input pixels; scores float32 `[B,A,C]` foreground-class probabilities."""


# Keyword-only parameters each callable member must accept (the trainer and exporter call them so).
_KEYWORDS = {"default_config": (), "test_config": (), "build": ("num_classes",),
             "loss_fn": ("config",), "decode": ("image_size", "config")}

_FAMILIES: dict[str, DetectorFamily] = {}
_discovered = False


def _describe(family) -> str:
  return getattr(family, "__name__", None) or type(family).__name__


def _check(family, *, kind: str = "detector", keywords=None, protocol=None) -> None:
  """Raises TypeError naming the first protocol member that `family` lacks or gets wrong.

  `kind`, `keywords` (member -> keyword-only parameters) and `protocol` default to the detector
  families'; `jaxdet.models.segmentation` checks its families with its own.
  """
  keywords = _KEYWORDS if keywords is None else keywords
  protocol = DetectorFamily if protocol is None else protocol
  what = _describe(family)
  name = getattr(family, "name", None)
  if not isinstance(name, str) or not name.isidentifier():
    raise TypeError(f"{kind} family {what} needs a `name` str identifier, got {name!r}")
  for member, required in keywords.items():
    fn = getattr(family, member, None)
    if fn is None:
      raise TypeError(f"{kind} family {name!r} ({what}) lacks `{member}` "
                      f"(see {protocol.__module__}.{protocol.__name__})")
    if not callable(fn):
      raise TypeError(f"{kind} family {name!r}: `{member}` must be callable")
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    missing = [] if takes_any else [k for k in required if k not in params]
    if missing:
      raise TypeError(f"{kind} family {name!r}: `{member}` must accept keyword(s) {missing}")
  assert isinstance(family, protocol)  # what the checks above guarantee


def family_modules(package_name: str, *, kind: str = "detector"):
  """Imports the modules of `package_name` not starting with `_` and yields each, checking that
  it sets `name` to its file name (TypeError naming the module otherwise)."""
  package = importlib.import_module(package_name)
  for info in pkgutil.iter_modules(package.__path__):
    if info.name.startswith("_"):
      continue
    module = importlib.import_module(f"{package_name}.{info.name}")
    if getattr(module, "name", None) != info.name:
      raise TypeError(f"{kind} module {module.__name__} must set `name = {info.name!r}` "
                      "(its file name)")
    yield module


def register(family, *, replace: bool = False):
  """Adds a detector family; usable as a decorator on a class or called with a module.

  Args:
    family: an object (module, class or instance) with the `DetectorFamily` members.
    replace: allow replacing a family of the same name (tests, interactive use).

  Returns:
    `family`, unchanged.

  Raises:
    TypeError: a protocol member is missing or malformed (the message names it).
    ValueError: the name is taken (by another family or an alias) and `replace` is False.
  """
  _check(family)
  _discover()  # So that a clash with a built-in family is caught here, not at its discovery.
  name = family.name
  if name in ALIASES:
    raise ValueError(f"detector name {name!r} is reserved as an alias of {ALIASES[name]!r}")
  old = _FAMILIES.get(name)
  if old is not None and old is not family and not replace:
    raise ValueError(f"detector family {name!r} is already registered by {_describe(old)}")
  _FAMILIES[name] = family
  return family


def unregister(name: str) -> None:
  """Removes a family registered with `register` (tests)."""
  _FAMILIES.pop(name, None)


def _discover() -> None:
  """Imports every module of `jaxdet.models.detectors` and registers it (once)."""
  global _discovered
  if _discovered:
    return
  _discovered = True  # Set first: `register` below calls back here.
  try:
    for module in family_modules(DISCOVER_PACKAGE):
      register(module)
  except BaseException:
    _discovered = False  # A broken module: report it again on the next use.
    raise


def canonical_name(name: str) -> str:
  """The registered name for `name`, resolving old aliases (`"yolo"` -> `"yolo_anchor_free"`)."""
  return ALIASES.get(name, name)


def names() -> tuple[str, ...]:
  """The registered family names, sorted."""
  _discover()
  return tuple(sorted(_FAMILIES))


def get(name: str) -> DetectorFamily:
  """The family registered as `name` (or an alias of it).

  Raises:
    ValueError: unknown name (the message lists the known ones).
  """
  _discover()
  family = _FAMILIES.get(canonical_name(name))
  if family is None:
    raise ValueError(f"unknown model {name!r}; expected one of {names()}")
  return family
