"""`train_and_evaluate(config, workdir)`: the training loop with eval, checkpoints and resume."""

import dataclasses
import functools
import pathlib
import time
from typing import Callable, Iterable, Iterator

import jax
import ml_collections
import numpy as np

from jaxdet.inference import load as load_lib
from jaxdet.train import checkpoint as ckpt
from jaxdet.train import config as config_lib
from jaxdet.train import curves
from jaxdet.train import distributed
from jaxdet.train import evaluate as eval_lib
from jaxdet.train import interrupt
from jaxdet.train import logging as log_lib
from jaxdet.train import optimizers
from jaxdet.train import preflight
from jaxdet.train import sharding
from jaxdet.train import state as state_lib
from jaxdet.train import step as step_lib


class TrainingError(RuntimeError):
  """Training stopped: non-finite loss, bad config or data. The message says what and where."""


TrainingInterrupted = interrupt.TrainingInterrupted  # SIGINT/SIGTERM; see `interrupt`.


@dataclasses.dataclass
class Components:
  """What the loop needs from the data and model stages.

  Attributes:
    class_names: names per class index.
    model: Linen module.
    loss_fn: `loss_fn(preds, batch) -> (loss [], metrics)`.
    decode: `decode(preds, *, image_size) -> (boxes_xyxy [B,A,4], scores [B,A,C])`.
    train_batches: `train_batches(start_step) -> iterator` of batches; the batch for step `s` is
      the same whether the run starts at 0 or resumes at `start_step <= s` (exact resume).
    eval_batches: `eval_batches() -> iterable` over the whole validation split (padded).
    ground_truth: `ground_truth() -> COCO annotation dict` of the validation split.
    freeze_patterns: model-required frozen parameter regexes.
    preflight: `preflight()` raises ValueError when a split, key or ground truth the run needs
      is missing; called before the first step (None: nothing to check).
    evaluate: None (COCO evaluation of `decode`'s detections) or `evaluate(*, variables,
      batches, report_dir) -> scalar metrics` (segmentation: `jaxdet.train.segmentation`).
    best_metric: the metric `checkpoints/best` maximizes ("AP"; segmentation "mean_iou").
    draw_predictions: None (detections) or `draw(path, variables, batches, class_names)`,
      writing `predictions.png`.
  """
  class_names: tuple[str, ...]
  model: object
  loss_fn: Callable
  decode: Callable
  train_batches: Callable[[int], Iterator[dict]]
  eval_batches: Callable[[], Iterable[dict]]
  ground_truth: Callable[[], dict]
  freeze_patterns: tuple[str, ...] = ()
  preflight: Callable[[], None] | None = None
  evaluate: Callable[..., dict] | None = None
  best_metric: str = "AP"
  draw_predictions: Callable | None = None


def build_components(config: ml_collections.ConfigDict) -> Components:
  """Wires `jaxdet.data` and `jaxdet.models` according to the config (a segmentation model:
  `jaxdet.train.segmentation.build_components`).

  Raises:
    ValueError: the dataset is not found (before anything is built).
  """
  from jaxdet import data, models
  from jaxdet.models import segmentation
  if segmentation.is_segmentation(config.model):
    from jaxdet.train import segmentation as seg_train
    return seg_train.build_components(config)
  data_dir = config.get("data_dir") or None
  info = data.dataset_info(config.dataset, data_dir=data_dir)
  class_names = tuple(info.class_names)
  detector = models.get_detector(config.model.name)
  evaluates = int(config.eval_every) > 0
  train_batches, eval_batches = batch_sources(config)

  @functools.cache  # Read once: by the preflight, then by every evaluation.
  def ground_truth():
    return data.coco_ground_truth(config.dataset, config.eval_split, data_dir=data_dir)

  def check():
    needed = {"--config.train_split": config.train_split}
    if evaluates:
      needed["--config.eval_split"] = config.eval_split
    preflight.check_splits(config.dataset, info.num_examples, needed)
    # Reads records up to the first box (one, unless the split has none: then all, undecoded).
    preflight.check_boxes(config.dataset, "--config.train_split", config.train_split,
                          data.has_boxes(config.dataset, config.train_split, data_dir=data_dir))
    if evaluates:
      # Reads every record's keys (boxes, labels, image header) of the split.
      eval_lib.category_ids_of(ground_truth(), len(class_names))
      preflight.check_boxes(config.dataset, "--config.eval_split", config.eval_split,
                            bool(ground_truth()["annotations"]))

  return Components(
      class_names=class_names,
      model=models.build(config.model, num_classes=len(class_names)),
      loss_fn=functools.partial(detector.loss_fn, config=config.model),
      decode=detector.decode,
      train_batches=train_batches, eval_batches=eval_batches, ground_truth=ground_truth,
      freeze_patterns=tuple(models.frozen_param_patterns(config.model)), preflight=check)


def batch_sources(config, **pipeline_args):
  """`(train_batches(start_step) -> iterator, eval_batches() -> iterable)` of
  `jaxdet.data.input_pipeline` for the config (`pipeline_args`, e.g. `masks=True`, go to every
  call)."""
  from jaxdet import data
  common = dict(image_size=config.image_size, max_boxes=config.max_boxes, seed=config.seed,
                data_dir=config.get("data_dir") or None, num_threads=config.data_threads,
                preprocess=config.model.get("preprocess"),  # the model's normalization/resize
                **eval_lib.proposal_args(config),  # Fast R-CNN: config.proposals_file
                **pipeline_args)

  def train_batches(start_step):
    # [distributed] each process reads its own rows of every global batch.
    return iter(data.input_pipeline(config.dataset, config.train_split,
                                    **distributed.train_input_args(config.batch_size), train=True,
                                    start_step=start_step, augment=config.augment,
                                    worker_count=config.data_workers, **common))

  def eval_batches():
    return data.input_pipeline(config.dataset, config.eval_split,
                               batch_size=config.eval_batch_size, train=False, **common)

  return train_batches, eval_batches


def _write_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
  path = workdir / "config.json"
  if path.exists():
    stored = config_lib.from_json(path.read_text())
    changed = config_lib.diff_keys(stored, config)
    if changed:
      print(f"note: resuming {workdir} with changed config keys: {', '.join(changed)}")
  tmp = path.with_suffix(".json.tmp")
  tmp.write_text(config_lib.to_json(config))
  tmp.replace(path)


def _flat_shapes(tree) -> dict[str, tuple[int, ...]]:
  """`{"backbone/stem/conv/kernel": shape, ...}` of a parameter tree."""
  return {optimizers.path_name(p): tuple(np.shape(v))
          for p, v in jax.tree_util.tree_leaves_with_path(tree)}


def transfer_regex(target_params, source_params) -> str | None:
  """An `init_from.include_regex` selecting the top-level modules (`backbone`, `fpn`, `neck`,
  ...) of `target_params` whose every parameter is in `source_params` with the same shape: by
  name, e.g. `'^(backbone|fpn|box_head)/'` between RetinaNets of different class counts, or, when
  that is shorter, by excluding the others, e.g. `'^(?!(layer_29_conv|layer_36_conv)/)'` between
  YOLOv4-tiny models (one module per Darknet layer). None when no module matches."""
  target, source = _flat_shapes(target_params), _flat_shapes(source_params)
  tops = list(dict.fromkeys(name.split("/")[0] for name in target))
  whole = [t for t in tops if all(source.get(n) == shape for n, shape in target.items()
                                  if n.split("/")[0] == t)]
  if not whole:
    return None
  named = f"^({'|'.join(whole)})/"
  excluded = f"^(?!({'|'.join(t for t in tops if t not in whole)})/)"
  return named if len(named) <= max(len(excluded), 40) else excluded


def _init_from_checkpoint(state, init: ml_collections.ConfigDict, *,
                          num_classes: int | None = None, converted: bool = False):
  """Copies parameters (and BatchNorm statistics) whose path matches `init.include_regex` from
  another checkpoint (transfer learning). Shapes must match.

  Args:
    state: the fresh `TrainState` whose `params`/`batch_stats` receive the copies.
    init: `config.init_from` (`checkpoint`, `include_regex`; '' copies everything).
    num_classes: this model's class count, compared in the message with the checkpoint's.
    converted: the weights are a converted folder fine-tuned in place (the message then says to
      start a new workdir from it, since `include_regex` does not apply there).

  Returns:
    `(params, batch_stats)`.

  Raises:
    TrainingError: one line: a parameter of another shape (named, with both shapes and the
      `include_regex` that copies only the layers whose shapes match) or no parameter matching
      `include_regex`.
    FileNotFoundError: no checkpoint at `init.checkpoint`.
  """
  import re
  step_dir = ckpt.find_step_dir(init.checkpoint)
  variables, source_meta = ckpt.read_step_dir(step_dir)
  pattern = re.compile(init.get("include_regex", "") or ".*")
  copied = []

  def mismatch(name, src_shape, shape):
    source_classes = source_meta.get("class_names")
    classes = ""
    if source_classes is not None and num_classes is not None and (
        len(source_classes) != num_classes):
      classes = f" ({len(source_classes)} classes there, {num_classes} here)"
    regex = transfer_regex(state.params, variables["params"])
    if regex is None:
      how = "no top-level module of this model has the checkpoint's shapes: another model?"
    elif converted:
      how = (f"to train it on other classes, start a new workdir with "
             f"--config.init_from.checkpoint={init.checkpoint} "
             f"--config.init_from.include_regex='{regex}'")
    else:
      how = (f"copy only the layers whose shapes match with "
             f"--config.init_from.include_regex='{regex}' (now "
             f"{init.get('include_regex', '')!r})")
    return TrainingError(f"init_from: {name} has shape {src_shape} in {init.checkpoint} but "
                         f"{shape} in this model{classes}; {how}")

  def take(tree, source):
    flat_src = {optimizers.path_name(p): v for p, v in jax.tree_util.tree_leaves_with_path(source)}

    def pick(path, leaf):
      name = optimizers.path_name(path)
      if not pattern.search(name) or name not in flat_src:
        return leaf
      src = np.asarray(flat_src[name])
      if src.shape != leaf.shape:
        raise mismatch(name, src.shape, leaf.shape)
      copied.append(name)
      return jax.numpy.asarray(src, leaf.dtype)
    return jax.tree_util.tree_map_with_path(pick, tree)

  params = take(state.params, variables["params"])
  batch_stats = take(state.batch_stats, variables.get("batch_stats", {}))
  if not copied:
    raise TrainingError(f"init_from: no parameter of {init.checkpoint} matches "
                        f"{init.include_regex!r}")
  print(f"init_from: copied {len(copied)} arrays from {init.checkpoint}")
  return params, batch_stats


def _denormalize(images: np.ndarray, preprocess=None) -> np.ndarray:
  from jaxdet.data.preprocess import denormalize_image
  return denormalize_image(images, preprocess)


def _write_predictions_png(path, variables, batches, class_names, *, predict, count=16,
                           min_score=0.3, preprocess=None):
  """Draws detections scoring >= `min_score` on the first `count` validation images, each
  enlarged to a readable tile (`draw.detection_tile`: at least `draw.MIN_TILE` px)."""
  from jaxdet.data import draw
  tiles = []
  for batch in batches:
    out = jax.device_get(eval_lib.predict_batch(predict, variables, batch))
    images = _denormalize(batch["image"], preprocess)
    for i in range(len(images)):
      if not batch["example_mask"][i] or len(tiles) >= count:
        continue
      shown = (np.arange(out["scores"].shape[1]) < out["num_detections"][i]) & (
          out["scores"][i] >= min_score)
      tiles.append(draw.detection_tile(images[i], out["boxes"][i], out["classes"][i],
                                       out["scores"][i], class_names=class_names, mask=shown))
    if len(tiles) >= count:
      break
  if tiles:
    draw.save_grid(tiles, str(path))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       components: Components | None = None,
                       progress: bool = True) -> dict[str, float]:
  """Trains, evaluates and checkpoints; resumes when `workdir` already holds a checkpoint.

  Everything the run needs (dataset, splits, ground truth) is checked before the workdir is
  created and before the first step. A finished workdir is reported as such and left unchanged.

  Args:
    config: resolved experiment config (see `experiments/`).
    workdir: output folder (`config.json`, `checkpoints/`, `metrics.jsonl`, `tensorboard/`,
      `curves.png`, `eval/`, `predictions.png`).
    components: data/model wiring; default `build_components(config)`.
    progress: show the tqdm bar.

  Returns:
    The last evaluation's scalar metrics (`AP`, `AP50`, ...), or {} when none ran.

  Raises:
    TrainingError: non-finite loss (the message names the step; the last good checkpoint is
      kept), an evaluation that failed (the trained state is saved first) or an invalid config.
    TrainingInterrupted: SIGINT/SIGTERM, at any moment (`interrupt`): the run stops at the next
      safe point, saving a checkpoint when it has trained steps.
  """
  workdir = pathlib.Path(workdir)
  with interrupt.deferred_stop() as stop:
    return _train(config, workdir, components, progress, stop)


def _train(config, workdir, components, progress, stop):
  total_steps = int(config.total_steps)
  finished = preflight.finished_run(
      workdir, total_steps=total_steps, evaluates=int(config.eval_every) > 0,
      early_stopping=int(config.get("early_stopping_patience", 0)) > 0)
  if finished is not None:
    print(finished.message)
    return finished.metrics
  sharding.maybe_initialize_distributed()  # Before any other JAX call (process_count).
  preflight.check_config(config)  # Values, augment preset, optimizer, postprocess: no I/O.
  mesh = sharding.make_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  if components is None:
    preflight.check_dataset(config)
    # [distributed] process 0 builds `shapes` (if needed) before the others open it.
    distributed.prepare_data_once(config.dataset, config.get("data_dir") or None)
    components = build_components(config)
  if components.preflight is not None:
    components.preflight()  # Splits, keys, ground truth: before any step or workdir file.
  _stop_point(stop, f"while opening the data: {_nothing_lost(workdir)}")

  # Until the run starts (below), nothing is written: the state is built, restored or
  # initialized from reads only, so a config, model or checkpoint that fails here leaves the
  # workdir as it was (no new folder, the old config.json byte for byte).
  tx, schedule = optimizers.build_optimizer(config.optimizer, total_steps=total_steps,
                                            freeze_patterns=components.freeze_patterns)
  base_rng = jax.random.PRNGKey(int(config.seed))
  state = state_lib.create_train_state(
      components.model, tx, rng=base_rng, image_size=config.image_size,
      external_proposals=load_lib.uses_external_proposals(config))
  init = config.get("init_from")
  reader = ckpt.latest_manager(workdir, create=False)  # Reads only: creates no folder.
  converted = ckpt.weights_only_step_dir(reader)  # e.g. a `jaxdet convert` output folder
  restored, meta = (None, None) if converted else ckpt.restore_state(reader, state)
  reader.close()
  progress_meta = {"best_ap": -1., "evals_since_best": 0, "last_eval": {}}
  if converted is not None:
    # Fine-tuning a converted model in its own folder: its weights, a fresh optimizer, step 0.
    init = ml_collections.ConfigDict({"checkpoint": str(converted), "include_regex": ""})
    params, batch_stats = _init_from_checkpoint(state, init, num_classes=len(
        components.class_names), converted=True)
    state = state.replace(params=params, batch_stats=batch_stats,
                          opt_state=tx.init(params), ema_params=jax.tree.map(np.copy, params))
    print(f"fine-tuning the weights of {converted} (no training state: starting at step 0)")
  elif restored is not None:
    state = restored
    progress_meta.update(meta.get("progress", {}))
    print(f"resuming {workdir} from step {int(state.step)}")
  elif init is not None and init.get("checkpoint"):
    params, batch_stats = _init_from_checkpoint(state, init,
                                                num_classes=len(components.class_names))
    state = state.replace(params=params, batch_stats=batch_stats,
                          opt_state=tx.init(params), ema_params=jax.tree.map(np.copy, params))
  state = sharding.replicate(state, mesh)
  # A fresh host copy: the state (and its rng leaf) is donated to the step, this key is not.
  step_rng = sharding.replicate(np.array(jax.device_get(state.rng)), mesh)

  use_ema = float(config.optimizer.get("ema_decay", 0.)) > 0
  train_step = sharding.jit_step(step_lib.make_train_step(
      model=components.model, loss_fn=components.loss_fn, tx=tx, schedule=schedule,
      ema_decay=float(config.optimizer.get("ema_decay", 0.)),
      compute_dtype=config.get("compute_dtype", "float32"),
      inject_nan_at_step=int(config.get("debug_nan_at_step", -1))), mesh)
  predict = None if components.decode is None else eval_lib.make_predict_fn(
      components.model, components.decode, image_size=config.image_size,
      postprocess=_postprocess_settings(config))
  meta_base = {"class_names": list(components.class_names), "config": config_lib.to_json(config)}

  def model_variables():
    return jax.device_get(state_lib.eval_variables(state, use_ema=use_ema))

  def meta_now(step, metrics=None):
    return dict(meta_base, step=step, metrics=metrics or progress_meta["last_eval"],
                progress=dict(progress_meta))

  def save(step):
    ckpt.save_latest(latest, state, model_variables=model_variables(), meta=meta_now(step))

  def run_eval(step, *, final):
    report_dir = workdir / "eval" if final or config.get("report_every_eval", False) else None
    if components.evaluate is not None:
      metrics = components.evaluate(
          variables=state_lib.eval_variables(state, use_ema=use_ema),
          batches=_stop_between(components.eval_batches(), stop), report_dir=report_dir)
    else:
      metrics = eval_lib.evaluate(
          predict=predict, variables=state_lib.eval_variables(state, use_ema=use_ema),
          batches=_stop_between(components.eval_batches(), stop),
          ground_truth=components.ground_truth(), class_names=components.class_names,
          report_dir=report_dir)
    ap = metrics.get(components.best_metric, -1.)  # what checkpoints/best keeps
    progress_meta["last_eval"] = metrics
    if ap > progress_meta["best_ap"]:
      progress_meta["best_ap"], progress_meta["evals_since_best"] = ap, 0
    else:
      progress_meta["evals_since_best"] += 1
    ckpt.save_best(best, step=step, model_variables=model_variables(),
                   meta=meta_now(step, metrics), ap=ap)
    writer.write(step, "eval", metrics)
    if distributed.is_main():  # [distributed]
      curves.write_curves_png(workdir)
    bar.write(f"step {step}: " + ", ".join(
        f"{k}={metrics[k]:.4f}" for k in ("AP", "AP50", "AP75", "mean_iou", "pixel_accuracy")
        if k in metrics))
    return metrics

  def eval_keeping_state(step, *, final, saved):
    """`run_eval`; on any failure the trained state is saved first (never lost)."""
    try:
      return run_eval(step, final=final)
    except TrainingInterrupted:
      if not saved:
        save(step)
      raise TrainingInterrupted(
          f"{stop.signal} during the evaluation at step {step}: checkpoint saved in {workdir}; "
          f"run the same command again to {'evaluate' if final else 'resume'}") from None
    except Exception as e:  # pylint: disable=broad-except
      if not saved:
        save(step)
      raise TrainingError(
          f"evaluation at step {step} failed ({type(e).__name__}: {e}); the trained state is "
          f"saved at step {step} in {workdir}: fix the cause and run the same command again to "
          f"{'evaluate it' if final else 'resume'}") from e

  _stop_point(stop, f"before the first step: {_nothing_lost(workdir)}")
  step = int(jax.device_get(state.step))
  start_step = step
  batches = components.train_batches(step)  # Opens the split, checks the pipeline's arguments.

  # The run starts: only now the workdir, its config.json and the checkpoint folders.
  workdir.mkdir(parents=True, exist_ok=True)
  if distributed.is_main():  # [distributed] process 0 writes the outputs.
    _write_config(workdir, config)
    if restored is not None:
      log_lib.drop_records_after(workdir, step)  # Logged after the checkpoint.
  latest = ckpt.latest_manager(workdir, keep=int(config.checkpoint.keep_latest))
  best = ckpt.best_manager(workdir, keep=int(config.checkpoint.keep_best))
  # [distributed] only process 0 logs and shows the bar.
  writer = log_lib.MetricWriter(workdir, tensorboard=config.get("tensorboard", True)) if (
      distributed.is_main()) else distributed.NullWriter()
  bar = log_lib.progress_bar(initial=step, total=total_steps,
                             enabled=progress and distributed.is_main())
  last_metrics: dict[str, float] = {}
  log_every, eval_every = int(config.log_every), int(config.eval_every)
  ckpt_every = int(config.checkpoint.every)
  patience = int(config.get("early_stopping_patience", 0))
  stopped_early = False
  t_last, images_since = time.perf_counter(), 0
  try:
    while step < total_steps:
      try:
        batch = next(batches)
      except StopIteration:
        raise TrainingError(f"the training input ended at step {step}; the train pipeline "
                            f"must repeat") from None
      batch = sharding.shard_batch(step_lib.train_batch(batch), mesh)
      state, metrics = train_step(state, batch, step_rng)  # The first call compiles.
      metrics = jax.device_get(metrics)
      if not metrics.pop("finite"):
        saved = latest.latest_step()
        raise TrainingError(
            f"non-finite loss or gradient at step {step} (loss={float(metrics['loss'])}); "
            f"stopped. Last good checkpoint: "
            f"{'step ' + str(saved) if saved is not None else 'none'} in {workdir}")
      step += 1
      images_since += int(config.batch_size)
      bar.update(1)
      if step % log_every == 0 or step == total_steps:
        now = time.perf_counter()
        scalars = {k: float(v) for k, v in metrics.items()}
        scalars["images_per_sec"] = images_since / max(now - t_last, 1e-9)
        t_last, images_since = now, 0
        writer.write(step, "train", scalars)
        bar.set_postfix(loss=f"{scalars['loss']:.3f}", lr=f"{scalars['lr']:.2e}",
                        img_s=f"{scalars['images_per_sec']:.1f}")
      distributed.agree_on_stop(stop, step)  # [distributed] all processes stop together.
      saved = False
      if step == total_steps:
        save(step)  # Before the final evaluation: a failing evaluation cannot lose training.
        saved = True
      elif eval_every > 0 and step % eval_every == 0:
        last_metrics = eval_keeping_state(step, final=False, saved=False)
        stopped_early = patience > 0 and progress_meta["evals_since_best"] >= patience
        progress_meta["stopped_early"] = stopped_early
        # Evaluation time must not count as training throughput.
        t_last, images_since = time.perf_counter(), 0
      if not saved and (step % ckpt_every == 0 or stopped_early or stop):
        save(step)
      stop.raise_if_requested(f"at step {step}: checkpoint saved in {workdir}; run the same "
                              f"command again to resume")
      if stopped_early:
        bar.write(f"early stopping at step {step}: no AP improvement in {patience} evaluations")
        break
    if eval_every > 0 and not stopped_early and not log_lib.has_eval_at(workdir, step):
      last_metrics = eval_keeping_state(step, final=True, saved=True)
    if eval_every > 0 and distributed.is_main() and (  # [distributed] process 0 draws.
        step > start_step or not (workdir / "predictions.png").exists()):
      draw = components.draw_predictions or functools.partial(
          _write_predictions_png, predict=predict, preprocess=config.model.get("preprocess"))
      draw(workdir / "predictions.png", distributed.local_copy(
           state_lib.eval_variables(state, use_ema=use_ema)),
           components.eval_batches(), components.class_names)
  finally:
    bar.close()
    writer.close()
    latest.close()
    best.close()
  return last_metrics


def _nothing_lost(workdir: pathlib.Path) -> str:
  """The interrupt message before this run trained a step."""
  steps = ckpt.step_dirs(workdir / "checkpoints" / ckpt.LATEST)
  if steps:
    return (f"nothing new to save (checkpoint of step {steps[-1].name} in {workdir}); run the "
            f"same command again to resume")
  return "nothing was trained yet; run the same command again to start"


def _stop_between(batches: Iterable[dict], stop: interrupt.StopRequest) -> Iterator[dict]:
  """`batches`, stopping with `TrainingInterrupted` at a batch boundary once a signal arrived."""
  for batch in batches:
    _stop_point(stop, "during the evaluation")
    yield batch


def _stop_point(stop: interrupt.StopRequest, what: str) -> None:
  """Honours a pending signal outside the step loop, in a single-process run only: a signal
  reaches one process, and the others would wait for it in a collective. A multi-process run
  stops at the next step boundary instead, where `distributed.agree_on_stop` makes every
  process stop (and checkpoint) at the same step."""
  if jax.process_count() == 1:
    stop.raise_if_requested(what)

def _postprocess_settings(config):
  from jaxdet.models.postprocess import postprocess_args
  from jaxdet.inference.load import postprocess_settings
  return postprocess_args(postprocess_settings(config), model_config=config.model,
                          image_size=config.image_size)
