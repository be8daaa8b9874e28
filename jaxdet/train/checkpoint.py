"""Orbax checkpoints: `latest` (full state, for resume) and `best` (top-k by val AP, for use).

They are separate managers because an Orbax manager with `best_fn` and `max_to_keep` deletes the
latest step. Each step directory holds Composite items:
  `state` (latest only): the whole `TrainState` as nested dicts of arrays;
  `model`: `{"params", "batch_stats"}` for inference (EMA params when EMA is on);
  `meta`: JSON (step, class names, resolved config, metrics).
Orbax writes into a temporary directory and renames it when complete, so a crash never leaves a
half-written step that looks valid. Nothing is pickled.
"""

import pathlib
from typing import Any

import flax
import jax
import orbax.checkpoint as ocp

LATEST, BEST = "latest", "best"
BEST_METRIC = "AP"


def _options(**kwargs) -> ocp.CheckpointManagerOptions:
  # Synchronous saves: a signal handler or a NaN stop must find the checkpoint on disk.
  return ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False, **kwargs)


def latest_manager(workdir: str | pathlib.Path, *, keep: int = 1) -> ocp.CheckpointManager:
  """Manager of `workdir/checkpoints/latest` keeping the `keep` most recent steps."""
  path = pathlib.Path(workdir).absolute() / "checkpoints" / LATEST
  return ocp.CheckpointManager(path, options=_options(max_to_keep=keep),
                               item_names=("state", "model", "meta"))


def best_manager(workdir: str | pathlib.Path, *, keep: int = 2) -> ocp.CheckpointManager:
  """Manager of `workdir/checkpoints/best` keeping the `keep` steps with the highest val AP."""
  path = pathlib.Path(workdir).absolute() / "checkpoints" / BEST
  return ocp.CheckpointManager(
      path, options=_options(max_to_keep=keep, best_fn=lambda m: m[BEST_METRIC], best_mode="max"),
      item_names=("model", "meta"))


def save_latest(manager: ocp.CheckpointManager, state, *, model_variables: dict,
                meta: dict[str, Any]) -> None:
  """Saves the full train state, inference variables and JSON metadata at `state.step`."""
  step = int(jax.device_get(state.step))
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(flax.serialization.to_state_dict(state)),
      model=ocp.args.StandardSave(model_variables),
      meta=ocp.args.JsonSave(meta)), force=True)
  manager.wait_until_finished()


def save_best(manager: ocp.CheckpointManager, *, step: int, model_variables: dict,
              meta: dict[str, Any], ap: float) -> None:
  """Offers a step to the best-k manager; it keeps it only if its `ap` ranks in the top k."""
  manager.save(step, args=ocp.args.Composite(model=ocp.args.StandardSave(model_variables),
                                             meta=ocp.args.JsonSave(meta)),
               metrics={BEST_METRIC: float(ap)}, force=True)
  manager.wait_until_finished()


def restore_state(manager: ocp.CheckpointManager, target, *, step: int | None = None):
  """Restores a `TrainState` with the structure, dtypes and shardings of `target`.

  Args:
    manager: the latest manager.
    target: a `TrainState` (concrete or `jax.ShapeDtypeStruct` leaves) to restore into.
    step: which step (default: the newest).

  Returns:
    `(state, meta)`, or `(None, None)` when the manager holds no checkpoint.
  """
  step = manager.latest_step() if step is None else step
  if step is None:
    return None, None
  target_dict = flax.serialization.to_state_dict(target)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_dict)
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
  return flax.serialization.from_state_dict(target, restored.state), restored.meta


def is_step_dir(path: pathlib.Path) -> bool:
  """True for a checkpoint step directory (holds `model/` and `meta/` items)."""
  return (path / "model").is_dir() and (path / "meta").is_dir()


def read_step_dir(path: str | pathlib.Path) -> tuple[dict, dict]:
  """Reads `(model_variables, meta)` from one step directory, without a target structure.

  Returns:
    `model_variables` as nested dicts of arrays, `meta` as the saved JSON dict.
  """
  path = pathlib.Path(path).absolute()
  variables = ocp.StandardCheckpointer().restore(path / "model")
  meta = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(path / "meta")
  return variables, meta


def find_step_dir(path: str | pathlib.Path) -> pathlib.Path:
  """Resolves a workdir, a `checkpoints/{best,latest}` folder or a step folder to one step folder.

  A workdir resolves to its best checkpoint by val AP when one exists, else its latest.

  Raises:
    FileNotFoundError: no checkpoint is found under `path`.
  """
  path = pathlib.Path(path).absolute()
  if is_step_dir(path):
    return path
  candidates = []
  if (path / "checkpoints").is_dir():
    candidates = [path / "checkpoints" / BEST, path / "checkpoints" / LATEST]
  elif path.name in (BEST, LATEST):
    candidates = [path]
  for folder in candidates:
    if not folder.is_dir():
      continue
    steps = sorted((p for p in folder.iterdir() if p.name.isdigit() and is_step_dir(p)),
                   key=lambda p: int(p.name))
    if not steps:
      continue
    if folder.name == BEST:
      # Highest AP, newest on ties; metrics live in each step's meta JSON.
      return max(steps, key=lambda p: (read_meta(p).get("metrics", {}).get(BEST_METRIC, -1.),
                                       int(p.name)))
    return steps[-1]
  raise FileNotFoundError(f"no checkpoint found under {path} (expected a workdir with "
                          f"checkpoints/, a checkpoints/best|latest folder, or a step folder)")


def read_meta(step_dir: pathlib.Path) -> dict:
  """The JSON `meta` item of a step folder."""
  return ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(pathlib.Path(step_dir).absolute() / "meta")


def select_step_dir(path: str | pathlib.Path, which: str = "auto") -> pathlib.Path:
  """One step folder of a workdir, chosen by `which`.

  Args:
    path: a workdir (or, with `which="auto"`, anything `find_step_dir` takes).
    which: `"auto"` (`find_step_dir`: best by val AP, else latest), `"best"`, `"latest"`, or a
      step number.

  Raises:
    FileNotFoundError: no such checkpoint; the message lists the steps that exist.
    ValueError: `which` is none of these.
  """
  which = str(which)
  if which == "auto":
    return find_step_dir(path)
  root = pathlib.Path(path).absolute() / "checkpoints"
  if which in (BEST, LATEST):
    return find_step_dir(root / which)
  if not which.isdigit():
    raise ValueError(f"checkpoint must be 'best', 'latest' or a step number, got {which!r}")
  found = {kind: sorted(int(p.name) for p in (root / kind).iterdir()
                        if p.name.isdigit() and is_step_dir(p))
           for kind in (BEST, LATEST) if (root / kind).is_dir()}
  for kind, steps in found.items():
    if int(which) in steps:
      return root / kind / str(int(which))
  listed = "; ".join(f"{kind}: {steps}" for kind, steps in found.items()) or "none"
  raise FileNotFoundError(f"no checkpoint of step {which} under {root} (steps found: {listed})")
