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
