"""Training a segmentation model (`config.model.task == "segmentation"`): the trainer's
components (masks from the input pipeline, the family's loss), the evaluation (a confusion
matrix over the validation split, `jaxdet.eval.segmentation` metrics) and the prediction grid.

Class ids: the dataset's C detection labels become mask values 1..C and 0 is background, so the
model has K = C + 1 classes named `("background", *dataset class names)`.
"""

import functools
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

BEST_METRIC = "mean_iou"  # what `checkpoints/best` keeps for a segmentation run
SCALARS = ("mean_iou", "pixel_accuracy", "mean_accuracy", "fw_iou")
BACKGROUND = "background"


def class_names_of(dataset_class_names) -> tuple[str, ...]:
  """`("background", *names)`: the K mask classes of a dataset with C detection classes."""
  return (BACKGROUND,) + tuple(dataset_class_names)


def build_components(config):
  """The `jaxdet.train.loop.Components` of a segmentation config (see the module docstring).

  Batches come from `jaxdet.data.input_pipeline(..., masks=True)` (its `mask` int32 `[B,S,S]`,
  255 = ignore); the loss is the family's `loss_fn`; evaluation is `evaluate` below.
  """
  from jaxdet import data, models
  from jaxdet.models import segmentation
  from jaxdet.train import preflight
  from jaxdet.train.loop import Components
  data_dir = config.get("data_dir") or None
  info = data.dataset_info(config.dataset, data_dir=data_dir)
  class_names = class_names_of(info.class_names)
  family = segmentation.get(config.model.name)
  model = segmentation.build(config.model, num_classes=len(class_names))
  from jaxdet.train.loop import batch_sources
  train_batches, eval_batches = batch_sources(config, masks=True)
  evaluates = int(config.eval_every) > 0

  def check():
    needed = {"--config.train_split": config.train_split}
    if evaluates:
      needed["--config.eval_split"] = config.eval_split
    preflight.check_splits(config.dataset, info.num_examples, needed)
    # One example with its mask, before the workdir exists: a dataset without the
    # `segmentation/mask` feature fails here with the pipeline's one-line error naming it.
    next(iter(data.input_pipeline(
        config.dataset, config.train_split, batch_size=1, image_size=config.image_size,
        max_boxes=config.max_boxes, train=False, seed=config.seed, data_dir=data_dir,
        preprocess=config.model.get("preprocess"), masks=True)))

  predict = make_predict_fn(model)
  return Components(
      class_names=class_names, model=model,
      loss_fn=functools.partial(family.loss_fn, config=config.model), decode=None,
      train_batches=train_batches, eval_batches=eval_batches, ground_truth=lambda: None,
      freeze_patterns=tuple(models.frozen_param_patterns(config.model)),
      preflight=check,
      evaluate=functools.partial(evaluate, predict, class_names=class_names,
                                 preprocess=config.model.get("preprocess")),
      best_metric=BEST_METRIC,
      draw_predictions=functools.partial(write_predictions_png, predict,
                                         preprocess=config.model.get("preprocess")))


def make_predict_fn(model) -> Callable:
  """Jitted `predict(variables, images float32 [B,S,S,3] normalized) -> masks int32 [B,S,S]`."""
  return jax.jit(lambda variables, images: jnp.argmax(
      model.apply(variables, images, train=False)["out"], axis=-1).astype(jnp.int32))


def confusion_over(predict, variables, batches: Iterable[dict], num_classes: int, *,
                   samples: list | None = None, num_samples: int = 8) -> np.ndarray:
  """`[K, K]` int64 confusion (rows target, columns prediction) of `predict` over eval batches
  (padding examples skipped, 255 ignored), summed over processes. With a `samples` list, the
  first `num_samples` examples' `(image float32 [S,S,3] normalized, pred [S,S], target [S,S])`
  are appended to it (for `masks.png`)."""
  from jaxdet.eval import segmentation as seg_eval
  from jaxdet.train.distributed import local_copy
  variables = local_copy(variables)
  confusion = np.zeros((num_classes, num_classes), np.int64)
  seen = False
  for batch in batches:
    seen = True
    keep = np.asarray(batch["example_mask"], bool)
    pred = np.asarray(jax.device_get(predict(variables, jnp.asarray(batch["image"]))))
    target = np.asarray(batch["mask"])
    confusion += seg_eval.confusion_matrix(pred[keep], target[keep], num_classes=num_classes)
    if samples is not None:
      for i in np.flatnonzero(keep)[:max(0, num_samples - len(samples))]:
        samples.append((np.asarray(batch["image"][i]), pred[i], target[i]))
  if not seen:
    raise ValueError("the evaluation split yielded no batches")
  if jax.process_count() > 1:  # [distributed] each process evaluated its own shard
    from jax.experimental import multihost_utils
    confusion = np.asarray(multihost_utils.process_allgather(confusion)).sum(0)
  return confusion


def evaluate(predict, *, variables, batches, class_names, report_dir=None,
             preprocess=None) -> dict[str, float]:
  """Segmentation metrics of one model on one split (at network-input resolution).

  Returns:
    The scalars `SCALARS` (`mean_iou`, `pixel_accuracy`, `mean_accuracy`, `fw_iou`) as floats;
    with `report_dir`, `jaxdet.eval.segmentation.write_segmentation_report` writes
    `segmentation_metrics.json` (all metrics, per-class IoU, the confusion; NaN as null),
    `segmentation_table.txt`, `confusion_matrix.png` and `masks.png` (the first 8 images with
    their predicted and ground-truth masks; `preprocess`: the model's, to draw the images) there.
  """
  from jaxdet.data.preprocess import denormalize_image
  from jaxdet.eval import segmentation as seg_eval
  from jaxdet.train.distributed import is_main
  samples = []
  confusion = confusion_over(predict, variables, batches, len(class_names), samples=samples)
  if report_dir is not None and is_main():
    images, pred, target = (np.stack(x) for x in zip(*samples))
    metrics = seg_eval.write_segmentation_report(
        confusion, str(report_dir), class_names=list(class_names),
        images=denormalize_image(images, preprocess), pred_masks=pred, target_masks=target)
  else:
    metrics = seg_eval.segmentation_metrics(confusion, class_names=list(class_names))
  return {k: float(metrics[k]) for k in SCALARS}


def write_predictions_png(predict, path, variables, batches, class_names, *, count=16,
                          preprocess=None) -> None:
  """The first `count` validation images with their predicted masks blended over them, each
  enlarged to a readable tile with a legend of its classes (`draw.mask_tile`)."""
  from jaxdet.data import draw
  from jaxdet.data.preprocess import denormalize_image
  tiles = []
  for batch in batches:
    masks = np.asarray(jax.device_get(predict(variables, jnp.asarray(batch["image"]))))
    images = denormalize_image(batch["image"], preprocess)
    for i in range(len(images)):
      if batch["example_mask"][i] and len(tiles) < count:
        tiles.append(draw.mask_tile(images[i], masks[i], class_names))
    if len(tiles) >= count:
      break
  if tiles:
    draw.save_grid(tiles, str(path))
