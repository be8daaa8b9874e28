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


def _options(*, create: bool = True, **kwargs) -> ocp.CheckpointManagerOptions:
  # Synchronous saves: a signal handler or a NaN stop must find the checkpoint on disk.
  # cleanup_tmp_directories: a save cut short (a second Ctrl-C) leaves a temporary folder.
  return ocp.CheckpointManagerOptions(create=create, enable_async_checkpointing=False,
                                      cleanup_tmp_directories=create, **kwargs)


def latest_manager(workdir: str | pathlib.Path, *, keep: int = 1,
                   create: bool = True) -> ocp.CheckpointManager:
  """Manager of `workdir/checkpoints/latest` keeping the `keep` most recent steps.

  `create=False` opens it for reading only: no folder is created (a missing one holds no
  steps) and no temporary folder of an interrupted save is removed; for restoring before a run
  has started (a run that fails to start writes nothing)."""
  path = pathlib.Path(workdir).absolute() / "checkpoints" / LATEST
  return ocp.CheckpointManager(path, options=_options(create=create, max_to_keep=keep),
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


def weights_only_step_dir(manager: ocp.CheckpointManager) -> pathlib.Path | None:
  """The newest step folder of `manager` when it holds model weights but no training `state`
  (what `jaxdet convert` writes: a starting point to fine-tune, not a run to resume), else None."""
  step = manager.latest_step()
  if step is None:
    return None
  step_dir = pathlib.Path(manager.directory) / str(step)
  return step_dir if is_step_dir(step_dir) and not (step_dir / "state").exists() else None


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
    steps = step_dirs(folder)
    if not steps:
      continue
    if folder.name == BEST:
      # Highest AP (segmentation: mean IoU), newest on ties; metrics live in each step's meta.
      def score(p):
        metrics = read_meta(p).get("metrics", {})
        return metrics.get(BEST_METRIC, metrics.get("mean_iou", -1.))
      return max(steps, key=lambda p: (score(p), int(p.name)))
    return steps[-1]
  raise FileNotFoundError(f"no checkpoint found under {path} (expected a workdir with "
                          f"checkpoints/, a checkpoints/best|latest folder, or a step folder)")


def read_meta(step_dir: pathlib.Path) -> dict:
  """The JSON `meta` item of a step folder."""
  return ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(pathlib.Path(step_dir).absolute() / "meta")


def step_dirs(folder: pathlib.Path) -> list[pathlib.Path]:
  """The complete step folders in `folder` (e.g. `checkpoints/latest`), oldest first."""
  if not folder.is_dir():
    return []
  return sorted((p for p in folder.iterdir() if p.name.isdigit() and is_step_dir(p)),
                key=lambda p: int(p.name))


def resolve_checkpoint(path: str | pathlib.Path, which: str | int | None = None) -> pathlib.Path:
  """One step folder of a workdir, chosen by `which`.

  Args:
    path: a workdir (or any path `find_step_dir` accepts when `which` is None).
    which: `"best"` (highest val AP; the latest when the run never evaluated), `"latest"`, a
      step number (int or digits, looked up in `latest/` then `best/`), or None (as
      `find_step_dir`).

  Returns:
    The step folder.

  Raises:
    FileNotFoundError: no such checkpoint; the message lists the steps there are.
    ValueError: `which` is none of the above.
  """
  path = pathlib.Path(path).absolute()
  if which is None or (which == BEST and not (path / "checkpoints").is_dir()):
    return find_step_dir(path)
  which = str(which)
  folders = {name: step_dirs(path / "checkpoints" / name) for name in (LATEST, BEST)}
  if which == BEST:
    return find_step_dir(path)
  if which == LATEST:
    if not folders[LATEST]:
      raise FileNotFoundError(f"no latest checkpoint under {path}/checkpoints")
    return folders[LATEST][-1]
  if not which.isdigit():
    raise ValueError(f"checkpoint must be 'best', 'latest' or a step number, got {which!r}")
  for name in (LATEST, BEST):
    for step_dir in folders[name]:
      if int(step_dir.name) == int(which):
        return step_dir
  have = sorted({int(p.name) for dirs in folders.values() for p in dirs})
  raise FileNotFoundError(f"no checkpoint of step {which} under {path}/checkpoints; steps kept: "
                          f"{', '.join(map(str, have)) or 'none'}")
