"""Experiment configs: load a Python config file, apply `--config.KEY=VALUE` overrides, JSON I/O.

A config file is trusted user code (`get_config()` returning an `ml_collections.ConfigDict`). A
workdir's resolved config is stored and read back as JSON only, so opening a workdir never executes
Python from it.
"""

import ast
import importlib.util
import json
import pathlib
from typing import Any

import ml_collections


class ConfigError(ValueError):
  """A config file or an override is invalid (unknown key, wrong type, unreadable file)."""


def _tuplify(value: Any) -> Any:
  # JSON has no tuples; lists are stored as tuples so a config and its JSON round trip compare
  # equal and stay hashable (Linen module attributes, jit static args).
  if isinstance(value, (list, tuple)):
    return tuple(_tuplify(v) for v in value)
  if isinstance(value, dict):
    return {k: _tuplify(v) for k, v in value.items()}
  return value


def _normalize(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  return _canonical_model_name(ml_collections.ConfigDict(_tuplify(config.to_dict())))


def _canonical_model_name(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  # A detector family's old name (e.g. "yolo") becomes its registered one, so configs, checkpoints
  # and export metadata written before a rename load under, and report, the current name.
  model = config.get("model")
  if isinstance(model, ml_collections.ConfigDict) and isinstance(model.get("name"), str):
    from jaxdet.models import registry  # Imported only when a model is named (it imports jax).
    model.name = registry.canonical_name(model.name)
  return config


def load_config_file(path: str | pathlib.Path) -> ml_collections.ConfigDict:
  """Runs `get_config()` of a Python config file.

  Args:
    path: a `.py` file defining `get_config() -> ml_collections.ConfigDict`.

  Returns:
    The config (lists converted to tuples).

  Raises:
    ConfigError: the file is missing or does not define a valid `get_config`.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise ConfigError(f"config file not found: {path}")
  if path.suffix != ".py":
    raise ConfigError(f"config file must be a Python file with get_config(): {path}")
  spec = importlib.util.spec_from_file_location(f"jaxdet_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # A broken user file: report it in one line.
    raise ConfigError(f"cannot import config file {path}: {type(e).__name__}: {e}") from e
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {path} does not define get_config()")
  config = module.get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"{path}: get_config() must return an ml_collections.ConfigDict, "
                      f"got {type(config).__name__}")
  return _normalize(config)


def _parse_value(key: str, text: str, current: Any) -> Any:
  """Parses an override string into the type of the current value."""
  if isinstance(current, bool):
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
      return True
    if lowered in ("false", "0", "no"):
      return False
    raise ConfigError(f"--config.{key}: expected a bool (true/false), got {text!r}")
  if isinstance(current, int):
    try:
      return int(text)
    except ValueError:
      raise ConfigError(f"--config.{key}: expected an int, got {text!r}") from None
  if isinstance(current, float):
    try:
      return float(text)
    except ValueError:
      raise ConfigError(f"--config.{key}: expected a float, got {text!r}") from None
  if isinstance(current, str):
    return text
  if isinstance(current, tuple):
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      raise ConfigError(f"--config.{key}: expected a tuple literal like (1, 2), got {text!r}") from None
    if not isinstance(value, (list, tuple)):
      raise ConfigError(f"--config.{key}: expected a tuple literal like (1, 2), got {text!r}")
    return _tuplify(value)
  if current is None:
    try:
      return _tuplify(ast.literal_eval(text))
    except (ValueError, SyntaxError):
      return text
  raise ConfigError(f"--config.{key}: cannot override a value of type {type(current).__name__}")


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: dict[str, str]) -> ml_collections.ConfigDict:
  """Returns a copy of `config` with dotted-key string overrides applied, type-checked.

  Args:
    config: the base config.
    overrides: `{"optimizer.learning_rate": "0.1", ...}` (values as typed on the command line).

  Returns:
    A new ConfigDict.

  Raises:
    ConfigError: a key is unknown, names a whole sub-config, or its value has the wrong type.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  for key, text in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for i, part in enumerate(parents):
      child = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
      if not isinstance(child, ml_collections.ConfigDict):
        raise ConfigError(f"unknown config key {key!r} ({'.'.join(parents[:i + 1])!r} is not a "
                          f"sub-config)")
      node = child
    if leaf not in node:
      known = ", ".join(sorted(node.keys()))
      raise ConfigError(f"unknown config key {key!r}; known keys here: {known}")
    current = node[leaf]
    if isinstance(current, ml_collections.ConfigDict):
      raise ConfigError(f"--config.{key} names a sub-config; override its fields instead")
    node[leaf] = _parse_value(key, text, current)
  return config


def parse_override_args(argv: list[str]) -> dict[str, str]:
  """Turns `["--config.a.b=1", "--config.c", "2"]` into `{"a.b": "1", "c": "2"}`.

  Raises:
    ConfigError: an argument is not of the form `--config.KEY=VALUE` / `--config.KEY VALUE`.
  """
  overrides, i = {}, 0
  while i < len(argv):
    arg = argv[i]
    if not arg.startswith("--config."):
      raise ConfigError(f"unrecognized argument {arg!r} (overrides look like --config.KEY=VALUE)")
    key, eq, value = arg[len("--config."):].partition("=")
    if not eq:
      if i + 1 >= len(argv):
        raise ConfigError(f"{arg} needs a value (--config.KEY=VALUE)")
      i += 1
      value = argv[i]
    if not key:
      raise ConfigError(f"empty config key in {arg!r}")
    overrides[key] = value
    i += 1
  return overrides


def to_json(config: ml_collections.ConfigDict) -> str:
  """Serializes a config to JSON (tuples become lists)."""
  return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
  """Reads a config back from `to_json` output without executing any code.

  Raises:
    ConfigError: the text is not a JSON object.
  """
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise ConfigError(f"config JSON is corrupt: {e}") from e
  if not isinstance(data, dict):
    raise ConfigError("config JSON must be an object")
  return _canonical_model_name(ml_collections.ConfigDict(_tuplify(data)))


def diff_keys(a: ml_collections.ConfigDict, b: ml_collections.ConfigDict) -> list[str]:
  """Dotted keys whose values differ between two configs (including keys present in only one)."""
  fa = _flatten(a.to_dict())
  fb = _flatten(b.to_dict())
  return sorted(k for k in set(fa) | set(fb) if _tuplify(fa.get(k)) != _tuplify(fb.get(k)))


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by every experiment; `experiments/*.py` start from this and set the rest.

  Every key here may be overridden with `--config.KEY=VALUE`; experiments add `model`.
  """
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dataset = "shapes"
  c.data_dir = ""  # '' = TFDS default
  c.train_split = "train"
  c.eval_split = "validation"
  c.image_size = 256  # S, square network input
  c.max_boxes = 32
  c.augment = "default"  # jaxdet.data augmentation preset: none | default | full | ssd | mosaic
  # Fast R-CNN (model.proposals="external"): proposals .npz ({split} -> the split's name; format:
  # jaxdet.data.proposals) and how many of each image's first proposals a batch carries.
  c.proposals_file = ""
  c.max_proposals = 300
  c.data_workers = 0  # grain worker processes (0: threads)
  c.data_threads = 2
  c.batch_size = 16
  c.eval_batch_size = 32
  c.total_steps = 1000
  c.log_every = 10
  c.eval_every = 500  # also evaluates at the last step; 0 disables evaluation
  c.report_every_eval = False  # COCO table + plots into eval/ at every eval (else final only)
  c.tensorboard = True
  c.compute_dtype = "float32"  # or "bfloat16" (mixed precision forward)
  c.early_stopping_patience = 0  # evaluations without AP gain before stopping; 0 = never
  c.debug_nan_at_step = -1  # test hook: the loss of this step becomes NaN

  c.optimizer = ml_collections.ConfigDict()
  o = c.optimizer
  o.name = "adamw"  # sgd | adamw | adam | rmsprop | adagrad | adadelta
  o.learning_rate = 1e-3
  o.momentum = 0.9  # sgd, rmsprop
  o.nesterov = False
  o.b1 = 0.9
  o.b2 = 0.999
  o.eps = 1e-8
  o.weight_decay = 5e-4  # masked off biases and norm parameters
  o.grad_clip_norm = 10.0  # 0 disables
  o.schedule = "cosine"  # constant | cosine | step
  o.warmup_steps = 100
  o.min_lr_fraction = 0.01  # cosine floor
  o.step_boundaries = (0.67, 0.89)  # step schedule: fractions of total_steps
  o.step_factor = 0.1
  o.freeze_regex = ""  # parameter paths ('backbone/stem/conv/kernel') to keep fixed
  o.ema_decay = 0.0  # EMA of params used for eval and export; 0 disables

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every = 500
  c.checkpoint.keep_latest = 1
  c.checkpoint.keep_best = 2

  c.init_from = ml_collections.ConfigDict()
  c.init_from.checkpoint = ""  # workdir or checkpoint folder to copy weights from
  c.init_from.include_regex = "^backbone/"

  c.postprocess = ml_collections.ConfigDict()
  c.postprocess.score_threshold = 0.05
  c.postprocess.iou_threshold = 0.6
  c.postprocess.max_detections = 100
  c.postprocess.pre_nms_top_k = 1000  # per level with pre_nms_top_k_per_level
  c.postprocess.pre_nms_top_k_per_level = False  # torchvision RetinaNet: top-k per FPN level
  c.postprocess.pre_nms_top_k_per_class = False  # torchvision SSD: top-k anchors per class
  return c
