"""Checks made before a training run creates files or takes its first step.

A run must not fail late for a reason it could have seen at the start (a misspelled dataset, a
missing validation split, ground truth whose classes do not match), and rerunning a finished run
must say so instead of silently doing nothing.
"""

import dataclasses
import pathlib
import re

from jaxdet.train import checkpoint as ckpt
from jaxdet.train import logging as log_lib


# Keys that must be integers >= 1, and >= 0: a run would otherwise fail after it started (a
# modulo by zero at the first log or checkpoint, an empty batch, a pipeline refusing the size).
_POSITIVE = ("batch_size", "eval_batch_size", "total_steps", "image_size", "max_boxes",
             "log_every", "checkpoint.every", "checkpoint.keep_latest", "checkpoint.keep_best")
_NON_NEGATIVE = ("seed", "eval_every", "early_stopping_patience", "data_workers", "data_threads",
                 "optimizer.warmup_steps")
_COMPUTE_DTYPES = ("float32", "bfloat16")


def _value(config, key: str):
  node = config
  for part in key.split("."):
    node = node.get(part) if hasattr(node, "get") else None
  return node


def _is_int(value) -> bool:
  # A config file may write 1e3 for 1000; the loop takes int() of these keys.
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and float(value).is_integer())


def check_config(config) -> None:
  """Raises ValueError (one line naming the `--config.KEY`) for a config value the run would
  refuse only later: sizes, step counts, the augment preset, the optimizer and its schedule,
  the learning rate, regexes, `compute_dtype`, the model's `preprocess` and the `postprocess`
  keys. Reads nothing but the config (the model block is checked when the model is built and
  initialized, the data by `check_dataset` and the components' preflight)."""
  import math  # pylint: disable=g-import-not-at-top
  for key in _POSITIVE + _NON_NEGATIVE:
    value, low = _value(config, key), 1 if key in _POSITIVE else 0
    if value is None and key not in ("batch_size", "total_steps", "image_size"):
      continue  # an optional key missing from an older config: its default applies
    if not _is_int(value) or value < low:
      raise ValueError(f"--config.{key}={value}: must be an integer >= {low}")
  lr = _value(config, "optimizer.learning_rate")
  if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not math.isfinite(lr) or lr < 0:
    raise ValueError(f"--config.optimizer.learning_rate={lr}: must be a finite number >= 0")
  ema = float(config.optimizer.get("ema_decay", 0.) or 0.)
  if not 0 <= ema < 1:
    raise ValueError(f"--config.optimizer.ema_decay={ema}: must be in [0, 1) (0 disables EMA)")
  dtype = config.get("compute_dtype", "float32")
  if dtype not in _COMPUTE_DTYPES:
    raise ValueError(f"--config.compute_dtype={dtype}: must be one of {', '.join(_COMPUTE_DTYPES)}")
  for key in ("optimizer.freeze_regex", "init_from.include_regex"):
    pattern = _value(config, key)
    try:
      re.compile(pattern or "")
    except (re.error, TypeError) as e:
      raise ValueError(f"--config.{key}={pattern!r} is not a regular expression: {e}") from None
  _check_with(config, "augment", _augment)
  _check_with(config, "optimizer", _optimizer)
  _check_with(config, "model.preprocess", _preprocess)
  _check_with(config, "postprocess", _postprocess)


def _check_with(config, key: str, check) -> None:
  """`check(config)`; a ValueError/TypeError becomes one line naming `--config.KEY`."""
  try:
    check(config)
  except (ValueError, TypeError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ValueError(f"--config.{key}: {first}") from None


def _augment(config) -> None:
  from jaxdet.data import augment  # pylint: disable=g-import-not-at-top
  augment.make_config(config.get("augment"))


def _optimizer(config) -> None:
  # Builds the optax transformation only (no state): names, schedule and their arguments.
  from jaxdet.train import optimizers  # pylint: disable=g-import-not-at-top
  optimizers.build_optimizer(config.optimizer, total_steps=int(config.total_steps))


def _preprocess(config) -> None:
  from jaxdet.data import preprocess  # pylint: disable=g-import-not-at-top
  preprocess.of_model(config.model)


def _postprocess(config) -> None:
  from jaxdet.models.postprocess import postprocess_settings  # pylint: disable=g-import-not-at-top
  s = postprocess_settings(config.get("postprocess"))
  if not 0 <= s["iou_threshold"] <= 1:
    raise ValueError(f"iou_threshold must be in [0, 1], got {s['iou_threshold']}")
  for key in ("max_detections", "pre_nms_top_k"):
    if s[key] < 1:
      raise ValueError(f"{key} must be >= 1, got {s[key]}")
  if s["pre_nms_top_k_per_level"] and s["pre_nms_top_k_per_class"]:
    raise ValueError("pre_nms_top_k_per_level and pre_nms_top_k_per_class cannot both be True")


def check_dataset(config) -> None:
  """Raises ValueError (naming close matches) when `config.dataset` is not in `data_dir`."""
  from jaxdet.data.sources import check_dataset as check  # pylint: disable=g-import-not-at-top
  check(config.dataset, config.get("data_dir") or None)


def base_split(split: str) -> str:
  """`"train[:10%]"` -> `"train"`, `"train+validation"` -> `"train"` (TFDS split syntax)."""
  return re.split(r"[\[+]", split)[0]


def check_splits(dataset: str, num_examples: dict[str, int], needed: dict[str, str]) -> None:
  """Raises ValueError when a split the run needs is missing or empty.

  Args:
    dataset: the dataset name (for the message).
    num_examples: split name -> number of examples (`jaxdet.data.dataset_info`).
    needed: the option that chose it -> split name, e.g. `{"--config.eval_split": "val"}`.
  """
  available = ", ".join(f"{k} ({v})" for k, v in sorted(num_examples.items())) or "none"
  for option, split in needed.items():
    for name in (base_split(s) for s in split.split("+")):
      if name not in num_examples:
        hint = (" (or --config.eval_every=0 to train without evaluation)"
                if option == "--config.eval_split" else "")
        raise ValueError(f"dataset {dataset!r} has no split {name!r} ({option}={split}); its "
                         f"splits: {available}. Pass {option}=NAME{hint}")
      if num_examples[name] == 0:
        raise ValueError(f"split {name!r} of dataset {dataset!r} is empty ({option}={split}); "
                         f"its splits: {available}")


def check_boxes(dataset: str, option: str, split: str, has_boxes: bool) -> None:
  """Raises ValueError when a detection run's split has no ground-truth box at all: it would
  train on nothing and evaluate to AP = -1. (Images without boxes are fine, a split without any
  box is not.)

  Args:
    dataset: the dataset name (for the message).
    option: the option that chose the split, e.g. `--config.train_split`.
    split: the split name.
    has_boxes: whether any of its examples has a box.
  """
  if has_boxes:
    return
  what = "learn" if option == "--config.train_split" else "evaluate"
  hint = (" (or --config.eval_every=0 to train without evaluation)"
          if option == "--config.eval_split" else "")
  raise ValueError(f"dataset {dataset!r} has no ground-truth boxes in split {split!r} "
                   f"({option}={split}): nothing to {what}; a detector needs boxes (`jaxdet data "
                   f"stats {dataset}` counts them){hint}")


@dataclasses.dataclass(frozen=True)
class Finished:
  """A finished run: the message to print and its last evaluation's metrics."""
  message: str
  metrics: dict


def finished_run(workdir: pathlib.Path, *, total_steps: int, evaluates: bool,
                 early_stopping: bool) -> Finished | None:
  """`Finished` when `workdir`'s latest checkpoint reached `total_steps` (and its final
  evaluation is logged, when the run evaluates) or it stopped early (and `early_stopping` is
  still on); else None.

  Reads only the latest checkpoint's JSON metadata and `metrics.jsonl` (cheap: nothing is built).
  """
  steps = ckpt.step_dirs(pathlib.Path(workdir) / "checkpoints" / ckpt.LATEST)
  if not steps:
    return None
  step = int(steps[-1].name)
  meta = ckpt.read_meta(steps[-1])
  early = early_stopping and bool(meta.get("progress", {}).get("stopped_early", False))
  if step < total_steps and not early:
    return None
  evals = [r for r in log_lib.read_metrics(workdir) if r.get("split") == "eval"]
  if evaluates and not early and not any(r["step"] == step for r in evals):
    return None  # The final evaluation is missing (it failed or was interrupted): run it.
  metrics = {k: v for k, v in (evals[-1] if evals else {}).items()
             if k not in ("step", "split", "time") and v is not None}
  shown = ", ".join(f"{k}={metrics[k]:.4f}" for k in ("AP", "AP50") if k in metrics)
  how = (f"it stopped early at step {step} (no AP gain in --config.early_stopping_patience "
         f"evaluations); to train on, pass --config.early_stopping_patience=0 and "
         f"--config.total_steps=N" if early else
         f"it trained {step} of total_steps={total_steps} steps; to train longer, run the same "
         f"command with --config.total_steps=N (N > {step})")
  return Finished(message=f"{workdir} is finished{' (' + shown + ')' if shown else ''}: {how}",
                  metrics=metrics)
