"""External region proposals for Fast R-CNN training (Detectron2's ``PROPOSAL_FILES_{TRAIN,TEST}``).

A proposals file is an ``.npz`` holding, for every image of a split:

- ``ids`` int64 ``[N]``: the dataset's image ids (``image/id``, what the pipeline's ``image_id``
  and the COCO ground truth use);
- ``offsets`` int64 ``[N + 1]``: image ``ids[i]`` owns rows ``offsets[i]:offsets[i + 1]`` of
- ``boxes_xyxy`` float32 ``[total, 4]``: xyxy in the original image's pixels, best first (the
  pipeline keeps the first ``max_proposals``).

``config.proposals_file`` names it; ``{split}`` in the name is replaced by the split
(``props_{split}.npz``), so training and evaluation each read their own file (one file holding
the ids of both splits works too).
"""

import pathlib

import numpy as np


def write_proposals(path, image_ids, boxes_list) -> None:
  """Writes a proposals file.

  Args:
    path: output ``.npz`` path.
    image_ids: ``[N]`` int image ids.
    boxes_list: N arrays ``[n_i, 4]`` xyxy original pixels, best first (``n_i`` may be 0).
  """
  ids = np.asarray(image_ids, np.int64).reshape(-1)
  boxes = [np.asarray(b, np.float32).reshape(-1, 4) for b in boxes_list]
  if len(boxes) != len(ids):
    raise ValueError(f"got {len(ids)} image ids but {len(boxes)} box arrays")
  if len(np.unique(ids)) != len(ids):
    raise ValueError("image ids of a proposals file must be unique")
  offsets = np.concatenate([[0], np.cumsum([len(b) for b in boxes])]).astype(np.int64)
  flat = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
  with open(path, "wb") as f:  # an open file: np.savez would append ".npz" to other names
    np.savez(f, ids=ids, offsets=offsets, boxes_xyxy=flat.astype(np.float32))


def load_proposals(path) -> dict[int, np.ndarray]:
  """Reads a proposals file into ``{image_id: boxes_xyxy [n, 4] float32}``.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file lacks a key or its offsets do not match its boxes.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"proposals file not found: {path}")
  with np.load(path) as f:
    missing = [k for k in ("ids", "offsets", "boxes_xyxy") if k not in f]
    if missing:
      raise ValueError(f"proposals file {path} lacks {missing} (see jaxdet.data.proposals)")
    ids, offsets = f["ids"].astype(np.int64), f["offsets"].astype(np.int64)
    boxes = f["boxes_xyxy"].astype(np.float32).reshape(-1, 4)
  if len(offsets) != len(ids) + 1 or offsets[0] != 0 or offsets[-1] != len(boxes) or np.any(
      np.diff(offsets) < 0):
    raise ValueError(f"proposals file {path}: offsets must rise from 0 to {len(boxes)} with "
                     f"{len(ids) + 1} entries")
  return {int(i): boxes[a:b] for i, a, b in zip(ids, offsets[:-1], offsets[1:])}


def split_path(template: str, split: str) -> str:
  """The proposals file of ``split``: ``template`` with ``{split}`` replaced (if it has one)."""
  return str(template).replace("{split}", split)


def lookup(table: dict, image_id: int, max_proposals: int, *, path="") -> np.ndarray:
  """The first ``max_proposals`` proposals ``[n, 4]`` float32 of ``image_id``.

  Raises:
    ValueError: the image id is not in the file (named, with the file).
  """
  boxes = table.get(int(image_id))
  if boxes is None:
    raise ValueError(f"image id {int(image_id)} has no proposals in {path or 'the proposals file'}")
  return boxes[:max_proposals]


def detector_proposals(workdir, split, *, top=300, checkpoint="best", data_dir=None,
                       min_score=0.0) -> tuple[np.ndarray, list[np.ndarray]]:
  """Proposals of every image of a split: a trained jaxdet detector's best detections.

  Runs the detector as its evaluation does (its dataset, resize and postprocess, with
  `max_detections = top` and `score_threshold = min_score`; a Fast R-CNN reads its own
  `config.proposals_file`) and keeps the boxes, best first, whatever their class.

  Args:
    workdir: a training workdir (or a checkpoint folder with `checkpoint=None`).
    split: split of the detector's dataset (TFDS slicing accepted).
    top: most proposals per image.
    checkpoint: `"best"`, `"latest"`, a step or None (`jaxdet.train.checkpoint`).
    data_dir: TFDS data dir (default: the run's).
    min_score: lowest detection score kept.

  Returns:
    `(image_ids [N] int64, [boxes_xyxy [n_i, 4] float32 original pixels])`, for
    `write_proposals`.
  """
  from jaxdet import data  # pylint: disable=g-import-not-at-top
  from jaxdet.inference import load as load_lib  # pylint: disable=g-import-not-at-top
  from jaxdet.train import checkpoint as ckpt  # pylint: disable=g-import-not-at-top
  from jaxdet.train import evaluate as eval_lib  # pylint: disable=g-import-not-at-top
  if int(top) < 1:
    raise ValueError(f"top must be >= 1, got {top}")
  detector = load_lib.load(ckpt.resolve_checkpoint(workdir, checkpoint))
  config = detector.config
  settings = dict(detector.postprocess_args(), max_detections=int(top),
                  score_threshold=float(min_score))
  predict = eval_lib.make_predict_fn(detector.model, load_lib.detector_module(config).decode,
                                     image_size=detector.image_size, postprocess=settings)
  batches = data.input_pipeline(
      config.dataset, split, batch_size=int(config.eval_batch_size), train=False,
      image_size=detector.image_size, max_boxes=int(config.max_boxes), seed=int(config.seed),
      data_dir=data_dir or config.get("data_dir") or None, shard_index=0, shard_count=1,
      preprocess=config.model.get("preprocess"), **eval_lib.proposal_args(config))
  ids, boxes = [], []
  for batch in batches:
    dets = eval_lib.detections_to_original(
        eval_lib.predict_batch(predict, detector.variables, batch), batch)
    for image_id, valid in zip(batch["image_id"], batch["example_mask"]):
      if valid:  # detections are in score order within each image
        ids.append(int(image_id))
        boxes.append(dets["boxes_xyxy"][dets["image_id"] == image_id])
  return np.asarray(ids, np.int64), boxes
