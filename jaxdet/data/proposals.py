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
