"""Training logs: a tqdm progress bar, TensorBoard event files and `metrics.jsonl`."""

import json
import math
import pathlib
import sys
import time

import tqdm


class MetricWriter:
  """Appends scalar metrics to `workdir/metrics.jsonl` and TensorBoard event files.

  Each JSON line is `{"step": int, "split": "train"|"eval", "time": float, <name>: float, ...}`.
  TensorBoard tags are `split/name`.
  """

  def __init__(self, workdir: str | pathlib.Path, *, tensorboard: bool = True):
    self.workdir = pathlib.Path(workdir)
    self.workdir.mkdir(parents=True, exist_ok=True)
    self._jsonl = open(self.workdir / "metrics.jsonl", "a", encoding="utf-8")
    self._tb = None
    if tensorboard:
      from tensorboardX import SummaryWriter  # Lazy: only the trainer needs it.
      self._tb = SummaryWriter(str(self.workdir / "tensorboard"))

  def write(self, step: int, split: str, scalars: dict[str, float]) -> None:
    """Writes finite-or-not scalars for one step (non-finite values are stored as null in JSON)."""
    clean = {k: float(v) for k, v in scalars.items()}
    record = {"step": int(step), "split": split, "time": time.time()}
    record.update({k: (v if math.isfinite(v) else None) for k, v in clean.items()})
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in clean.items():
        self._tb.add_scalar(f"{split}/{k}", v, int(step))
      self._tb.flush()

  def close(self) -> None:
    self._jsonl.close()
    if self._tb is not None:
      self._tb.close()


def progress_bar(*, initial: int, total: int, enabled: bool = True) -> tqdm.tqdm:
  """A step progress bar on stderr; `set_postfix` shows loss, lr and images/s."""
  return tqdm.tqdm(initial=initial, total=total, desc="train", unit="step", file=sys.stderr,
                   dynamic_ncols=True, disable=not enabled, mininterval=1.0)


def read_metrics(workdir: str | pathlib.Path) -> list[dict]:
  """All records of `workdir/metrics.jsonl` (for tests and tools)."""
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def has_eval_at(workdir: str | pathlib.Path, step: int) -> bool:
  """True when `metrics.jsonl` holds an evaluation record of `step`."""
  return any(r.get("split") == "eval" and r.get("step") == step for r in read_metrics(workdir))


def drop_records_after(workdir: str | pathlib.Path, step: int) -> None:
  """Removes records of steps > `step` (logged after the checkpoint a run resumes from), so the
  resumed run does not log those steps twice. Atomic (write then rename)."""
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return
  lines = [line for line in path.read_text().splitlines() if line.strip()]
  kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
  if len(kept) == len(lines):
    return
  tmp = path.with_suffix(".jsonl.tmp")
  tmp.write_text("".join(line + "\n" for line in kept))
  tmp.replace(path)
