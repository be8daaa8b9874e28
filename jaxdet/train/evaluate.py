"""Periodic evaluation: predict on the validation split, map boxes to original pixels, COCO AP."""

import pathlib
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np


def make_predict_fn(model, decode: Callable, *, image_size: int, postprocess: dict) -> Callable:
  """Jitted `predict(variables, images float32 [B,S,S,3] normalized, targets=None) -> postprocess
  dict`; `targets` (`model_targets(batch)`) carries a Fast R-CNN batch's `proposals`.

  Args:
    model: Linen module.
    decode: `decode(preds, *, image_size) -> (boxes_xyxy [B,A,4], scores [B,A,C])`.
    image_size: S.
    postprocess: `jaxdet.models.postprocess` settings.

  Returns:
    The jitted function; its outputs are `boxes` [B,K,4] xyxy network-input pixels, `scores`
    [B,K], `classes` [B,K] int32, `num_detections` [B] int32.
  """
  from jaxdet.models import postprocess as postprocess_fn

  def predict(variables, images, targets=None):
    extra = {} if targets is None else {"targets": targets}
    preds = model.apply(variables, images, train=False, **extra)
    boxes, scores = decode(preds, image_size=image_size)
    return postprocess_fn(boxes, scores, **postprocess)

  return jax.jit(predict)


def model_targets(batch: dict) -> dict | None:
  """The inference-time targets of a batch: its `proposals` [B,P,4] float32 and `proposal_mask`
  [B,P] bool (external proposals, Fast R-CNN), or None when it has none."""
  from jaxdet.train.step import OPTIONAL_TARGET_KEYS
  targets = {k: jnp.asarray(batch[k]) for k in OPTIONAL_TARGET_KEYS if k in batch}
  return targets or None


def predict_batch(predict: Callable, variables, batch: dict) -> dict:
  """`predict(variables, batch["image"])`, with the batch's `model_targets` when it has any."""
  targets = model_targets(batch)
  images = jnp.asarray(batch["image"])
  return predict(variables, images) if targets is None else predict(variables, images, targets)


def detections_to_original(out: dict, batch: dict) -> dict[str, np.ndarray]:
  """Flattens one batch of detections to original-image pixels (vectorized, host side).

  Args:
    out: postprocess output (`boxes` [B,K,4] xyxy input pixels, `scores`, `classes`,
      `num_detections`).
    batch: the eval batch (`image_id` [B], `scale` [B,2] (sx, sy), `orig_size` [B,2] (h, w),
      `example_mask` [B]).

  Returns:
    dict of flat arrays over the D kept detections: `image_id` int64 [D], `boxes_xyxy` float32
    [D,4] original pixels (clipped to the image), `scores` float32 [D], `classes` int32 [D].
  """
  out = jax.device_get(out)
  k = out["boxes"].shape[1]
  keep = (np.arange(k)[None, :] < out["num_detections"][:, None])
  keep &= np.asarray(batch["example_mask"], bool)[:, None]
  scale = np.asarray(batch["scale"], np.float32)
  boxes = out["boxes"] / np.concatenate([scale, scale], axis=1)[:, None, :]
  h = np.asarray(batch["orig_size"])[:, 0].astype(np.float32)
  w = np.asarray(batch["orig_size"])[:, 1].astype(np.float32)
  limits = np.stack([w, h, w, h], axis=1)[:, None, :]
  boxes = np.clip(boxes, 0., limits)
  image_ids = np.broadcast_to(np.asarray(batch["image_id"], np.int64)[:, None], keep.shape)
  return {"image_id": image_ids[keep], "boxes_xyxy": boxes[keep].astype(np.float32),
          "scores": np.asarray(out["scores"], np.float32)[keep],
          "classes": np.asarray(out["classes"], np.int32)[keep]}


def to_coco_arrays(dets: dict[str, np.ndarray], category_ids) -> tuple[np.ndarray, ...]:
  """`(image_ids [D], boxes_xywh [D,4], scores [D], category_ids [D])` for `coco_evaluate`.

  Args:
    dets: output of `detections_to_original` (possibly concatenated over batches).
    category_ids: `[C]` COCO category id of each class index.
  """
  b = dets["boxes_xyxy"].astype(np.float64)
  xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)
  cats = np.asarray(category_ids, np.int64)[dets["classes"]]
  return dets["image_id"].astype(np.int64), xywh, dets["scores"].astype(np.float64), cats


def predict_dataset(predict: Callable, variables, batches: Iterable[dict]) -> dict[str, np.ndarray]:
  """Runs `predict` over eval batches; returns the concatenated `detections_to_original` arrays."""
  parts = []
  for batch in batches:
    out = predict_batch(predict, variables, batch)
    parts.append(detections_to_original(out, batch))
  if not parts:
    raise ValueError("the evaluation split yielded no batches")
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def category_ids_of(ground_truth: dict, num_classes: int) -> list[int]:
  """Category id per class index: the ground truth's categories sorted by id, one per class."""
  ids = sorted(int(c["id"]) for c in ground_truth["categories"])
  if len(ids) != num_classes:
    raise ValueError(f"ground truth has {len(ids)} categories but the model has {num_classes} "
                     f"classes")
  return ids


def evaluate(*, predict: Callable, variables, batches: Iterable[dict], ground_truth: dict,
             class_names, report_dir: str | pathlib.Path | None = None) -> dict[str, float]:
  """COCO evaluation of one model on one split.

  Args:
    predict: from `make_predict_fn`.
    variables: `{"params", "batch_stats"}`.
    batches: eval batches from `jaxdet.data.input_pipeline(..., train=False)`.
    ground_truth: COCO annotation dict of the split (`jaxdet.data.coco_ground_truth`).
    class_names: names per class index.
    report_dir: when given, `jaxdet.eval.write_report` writes the COCO table and plots here.

  Returns:
    Scalar COCO metrics (`AP`, `AP50`, `AP75`, ...) as floats.
  """
  from jaxdet import eval as jeval
  # [distributed] each process predicts its shard locally; all get every shard's detections.
  from jaxdet.eval.gather import gather_detections
  from jaxdet.train.distributed import is_main, local_copy
  dets = gather_detections(predict_dataset(predict, local_copy(variables), batches))
  arrays = to_coco_arrays(dets, category_ids_of(ground_truth, len(class_names)))
  report = jeval.coco_evaluate(ground_truth, arrays)
  if report_dir is not None and is_main():  # [distributed] process 0 writes the report.
    # coco_stats.json, coco_table.txt, PR / F1 curves and confusion matrices (PNG).
    from jaxdet.eval.report import write_report
    write_report(ground_truth, arrays, str(report_dir), class_names=list(class_names),
                 result=report)
  return scalar_metrics(report)


def proposal_args(config) -> dict:
  """`input_pipeline`'s `proposals_file` / `max_proposals` from `config.proposals_file` and
  `config.max_proposals` (nothing when the config has no proposals file).

  Raises:
    ValueError: a Fast R-CNN model (`model.proposals = "external"`) without a proposals file, or
      a proposals file for a model that makes its own.
  """
  from jaxdet.inference.load import uses_external_proposals
  path = config.get("proposals_file") or ""
  external = uses_external_proposals(config)
  if external and not path:
    raise ValueError("model.proposals='external' (Fast R-CNN) needs --config.proposals_file="
                     "PATH.npz (see jaxdet.data.proposals)")
  if path and not external:
    raise ValueError(f"proposals_file={path!r} is only read by a model with "
                     f"model.proposals='external' (Fast R-CNN)")
  return {"proposals_file": path, "max_proposals": int(config.get("max_proposals", 300))} \
      if path else {}


def scalar_metrics(report: dict) -> dict[str, float]:
  """The float-valued top-level entries of a `coco_evaluate` report."""
  return {k: float(v) for k, v in report.items()
          if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)}


def evaluate_workdir(workdir: str | pathlib.Path, *, split: str | None = None,
                     checkpoint: str | int | None = "best",
                     report_dir: str | pathlib.Path | None = None) -> tuple[dict, pathlib.Path]:
  """Evaluates a trained workdir's model on a split of its dataset, as training does.

  Args:
    workdir: a training workdir (or a checkpoint folder when `checkpoint` is None).
    split: split name (default: the run's `eval_split`); TFDS slicing is accepted.
    checkpoint: `"best"`, `"latest"`, a step number, or None (see `checkpoint.resolve_checkpoint`).
    report_dir: where the report (`coco_stats.json`, `coco_table.txt`, PR / F1 curves,
      confusion matrices) goes; default `workdir/evaluate/<split>-step<N>`.

  Returns:
    `(metrics, report_dir)`: scalar COCO metrics (`AP`, `AP50`, ...) and the report folder
    (a segmentation model: `mean_iou`, `pixel_accuracy`, ... and `segmentation_metrics.json`).

  Raises:
    FileNotFoundError: no such checkpoint.
    ValueError: the split is missing or empty, or the dataset's classes differ from the model's.
  """
  from jaxdet import data
  from jaxdet.train import checkpoint as ckpt
  from jaxdet.inference import load as load_lib
  from jaxdet.train import preflight
  step_dir = ckpt.resolve_checkpoint(workdir, checkpoint)
  detector = load_lib.load(step_dir)
  config = detector.config
  split = split or config.eval_split
  data_dir = config.get("data_dir") or None
  info = data.dataset_info(config.dataset, data_dir=data_dir)
  preflight.check_splits(config.dataset, info.num_examples, {"--split": split})
  segmentation = getattr(detector, "task", "detection") == "segmentation"
  if segmentation:  # mask classes: background + the dataset's
    from jaxdet.train import segmentation as seg_train
    expected = seg_train.class_names_of(info.class_names)
  else:
    expected = tuple(info.class_names)
  if expected != tuple(detector.class_names):
    raise ValueError(f"dataset {config.dataset!r} has classes {list(info.class_names)} but the "
                     f"model in {step_dir} was trained on {list(detector.class_names)}")
  if report_dir is None:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in split)
    report_dir = pathlib.Path(workdir) / "evaluate" / f"{safe}-step{step_dir.name}"
  if segmentation:
    batches = data.input_pipeline(
        config.dataset, split, batch_size=int(config.eval_batch_size), train=False,
        image_size=detector.image_size, max_boxes=int(config.max_boxes), seed=int(config.seed),
        data_dir=data_dir, num_threads=int(config.get("data_threads", 2)),
        preprocess=config.model.get("preprocess"), masks=True)
    metrics = seg_train.evaluate(seg_train.make_predict_fn(detector.model),
                                 variables=detector.variables, batches=batches,
                                 class_names=detector.class_names, report_dir=report_dir,
                                 preprocess=config.model.get("preprocess"))
    return metrics, pathlib.Path(report_dir)
  predict = make_predict_fn(detector.model, load_lib.detector_module(config).decode,
                            image_size=detector.image_size,
                            postprocess=detector.postprocess_args())
  batches = data.input_pipeline(
      config.dataset, split, batch_size=int(config.eval_batch_size), train=False,
      image_size=detector.image_size, max_boxes=int(config.max_boxes), seed=int(config.seed),
      data_dir=data_dir, num_threads=int(config.get("data_threads", 2)),
      preprocess=config.model.get("preprocess"),  # the model's normalization and resize rule
      **proposal_args(config))
  metrics = evaluate(predict=predict, variables=detector.variables, batches=batches,
                     ground_truth=data.coco_ground_truth(config.dataset, split, data_dir=data_dir),
                     class_names=detector.class_names, report_dir=report_dir)
  return metrics, pathlib.Path(report_dir)
