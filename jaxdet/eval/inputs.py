"""Loading and validating COCO-format ground truth and detections into flat NumPy arrays.

Semantics follow pycocotools' ``COCO`` / ``COCO.loadRes`` so that every evaluator in this package
sees exactly what ``COCOeval`` sees:
  * images and categories are the sorted unique ids of ``gt["images"]`` / ``gt["categories"]``;
  * annotations of unknown images or categories are dropped; within an (image, category) group
    annotations keep their order in the file (it decides IoU tie-breaks);
  * detection areas are ``w * h`` (``loadRes``), ground-truth areas are the ``area`` field;
  * detections of categories missing from ``gt["categories"]`` are dropped, detections of unknown
    images are an error (``loadRes`` asserts).
"""

import json
import os
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np


class GroundTruth(NamedTuple):
  """Ground truth as flat arrays, annotations sorted by (image, category, file order).

  Attributes:
    image_ids: [I] int64, sorted unique image ids.
    category_ids: [K] int64, sorted unique category ids.
    category_names: K names (``str(id)`` where a category has no name).
    image_index: [N] int64 index into ``image_ids``.
    category_index: [N] int64 index into ``category_ids``.
    boxes_xywh: [N, 4] float64 COCO boxes (x, y, width, height), pixels.
    area: [N] float64, the ``area`` field (``w * h`` where absent).
    iscrowd: [N] bool.
    ann_ids: [N] float64 annotation ids (pycocotools treats a match to id 0 as "no match").
    difficult: [N] bool, VOC ``difficult`` (or ``ignore``) flag; unused by COCO evaluation.
  """
  image_ids: np.ndarray
  category_ids: np.ndarray
  category_names: tuple
  image_index: np.ndarray
  category_index: np.ndarray
  boxes_xywh: np.ndarray
  area: np.ndarray
  iscrowd: np.ndarray
  ann_ids: np.ndarray
  difficult: np.ndarray


class Detections(NamedTuple):
  """Detections as flat arrays, in input order (only known categories kept).

  Attributes:
    image_index: [D] int64 index into ``GroundTruth.image_ids``.
    category_index: [D] int64 index into ``GroundTruth.category_ids``.
    boxes_xywh: [D, 4] float64.
    scores: [D] float64.
    order: [D] int64 position in the input list (pycocotools' tie-break for equal scores).
  """
  image_index: np.ndarray
  category_index: np.ndarray
  boxes_xywh: np.ndarray
  scores: np.ndarray
  order: np.ndarray


def read_json(source, what: str):
  """``json.load`` of a path (clear ValueError when missing or malformed); other values as is."""
  if isinstance(source, (str, os.PathLike)):
    try:
      with open(source) as f:
        return json.load(f)
    except FileNotFoundError:
      raise ValueError(f"{what} file not found: {source}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise ValueError(f"{what} file {source} is not valid JSON: {e}") from None
  return source


def _column(items: list, key: str, what: str, dtype) -> np.ndarray:
  try:
    return np.fromiter(map(itemgetter(key), items), dtype=dtype, count=len(items))
  except KeyError:
    bad = next(i for i, x in enumerate(items) if key not in x)
    raise ValueError(f"{what} #{bad} has no {key!r} field") from None
  except (TypeError, ValueError) as e:
    raise ValueError(f"{what}: field {key!r} must be a number ({e})") from None


def _boxes(items: list, what: str, *, allow_negative: bool = False) -> np.ndarray:
  if not items:
    return np.zeros((0, 4), np.float64)
  try:
    boxes = np.array(list(map(itemgetter("bbox"), items)), dtype=np.float64)
  except KeyError:
    bad = next(i for i, x in enumerate(items) if "bbox" not in x)
    raise ValueError(f"{what} #{bad} has no 'bbox' field") from None
  except (TypeError, ValueError):
    raise ValueError(f"{what}: every 'bbox' must be a list of 4 numbers [x, y, w, h]") from None
  if boxes.ndim != 2 or boxes.shape[1] != 4:
    raise ValueError(f"{what}: every 'bbox' must be a list of 4 numbers [x, y, w, h]")
  _check_boxes(boxes, what, allow_negative=allow_negative)
  return boxes


def _check_boxes(boxes_xywh: np.ndarray, what: str, *, allow_negative: bool = False):
  finite = np.isfinite(boxes_xywh).all(axis=1)
  if not finite.all():
    bad = int(np.flatnonzero(~finite)[0])
    raise ValueError(f"{what} #{bad} has a non-finite box {boxes_xywh[bad].tolist()}")
  if allow_negative:
    return
  negative = (boxes_xywh[:, 2] < 0) | (boxes_xywh[:, 3] < 0)
  if negative.any():
    bad = int(np.flatnonzero(negative)[0])
    raise ValueError(f"{what} #{bad} has a negative width or height {boxes_xywh[bad].tolist()}")


def load_ground_truth(gt) -> GroundTruth:
  """Reads a COCO annotation dict (or JSON path) into a `GroundTruth`.

  Args:
    gt: COCO dict with ``images``, ``annotations`` and ``categories``, or a path to its JSON.

  Returns:
    `GroundTruth` (already parsed inputs are returned unchanged).

  Raises:
    ValueError: missing file, malformed JSON, missing fields, non-finite or negative boxes,
      duplicate annotation ids.
  """
  if isinstance(gt, GroundTruth):
    return gt
  data = read_json(gt, "ground truth")
  if not isinstance(data, dict) or "images" not in data or "categories" not in data:
    raise ValueError("ground truth must be a COCO dict with 'images', 'annotations' and "
                     "'categories'")
  images, cats = data["images"], data["categories"]
  anns = data.get("annotations", [])
  try:
    image_ids = np.unique(np.array([im["id"] for im in images], dtype=np.int64))
    cat_ids_raw = np.array([c["id"] for c in cats], dtype=np.int64)
  except (KeyError, TypeError, ValueError):
    raise ValueError("ground truth: every image and category needs an integer 'id'") from None
  category_ids = np.unique(cat_ids_raw)
  names = {int(c["id"]): str(c.get("name", c["id"])) for c in cats}
  category_names = tuple(names[int(k)] for k in category_ids)

  ann_img = _column(anns, "image_id", "ground-truth annotation", np.int64)
  ann_cat = _column(anns, "category_id", "ground-truth annotation", np.int64)
  ann_ids = _column(anns, "id", "ground-truth annotation", np.float64)
  boxes = _boxes(anns, "ground-truth annotation")
  try:
    area = np.fromiter((a.get("area", b[2] * b[3]) for a, b in zip(anns, boxes)), np.float64,
                       count=len(anns))
  except (TypeError, ValueError):
    area = np.full(1, np.nan)
  if not np.isfinite(area).all():
    raise ValueError("ground truth: every 'area' must be a finite number")
  iscrowd = np.fromiter((bool(a.get("iscrowd", 0)) for a in anns), bool, count=len(anns))
  difficult = np.fromiter((bool(a.get("difficult", a.get("ignore", 0))) for a in anns), bool,
                          count=len(anns))
  if len(np.unique(ann_ids)) != len(ann_ids):
    raise ValueError("ground truth: annotation ids must be unique")

  img_idx, img_ok = _lookup(image_ids, ann_img)
  cat_idx, cat_ok = _lookup(category_ids, ann_cat)
  keep = img_ok & cat_ok
  # Stable sort: (image, category) groups keep the file order of their annotations.
  order = np.flatnonzero(keep)
  order = order[np.lexsort((cat_idx[order], img_idx[order]))]
  return GroundTruth(image_ids, category_ids, category_names, img_idx[order], cat_idx[order],
                     boxes[order], area[order], iscrowd[order], ann_ids[order], difficult[order])


def _lookup(sorted_ids: np.ndarray, values: np.ndarray):
  """Index of each value in ``sorted_ids`` and whether it is present."""
  idx = np.searchsorted(sorted_ids, values)
  idx = np.minimum(idx, max(len(sorted_ids) - 1, 0))
  found = sorted_ids[idx] == values if len(sorted_ids) else np.zeros(len(values), bool)
  return idx.astype(np.int64), found


def load_detections(detections, gt: GroundTruth) -> Detections:
  """Reads detections into `Detections` aligned with ``gt``'s image and category indices.

  Args:
    detections: a list of COCO result dicts (``image_id``, ``category_id``, ``bbox`` xywh,
      ``score``), a path to such a JSON list, or a tuple/dict of arrays ``(image_ids [D],
      boxes_xywh [D, 4], scores [D], category_ids [D])`` (dict keys: ``image_ids``,
      ``boxes_xywh``, ``scores``, ``category_ids``).
    gt: the parsed ground truth.

  Returns:
    `Detections`, in input order, detections of categories absent from ``gt`` dropped.

  A detection with a negative width or height is kept, as pycocotools does (it overlaps nothing
  and its negative area is outside every area range): a badly trained model may output one.

  Raises:
    ValueError: malformed input, non-finite boxes or scores, or image ids absent from ``gt``.
  """
  if isinstance(detections, Detections):
    return detections
  data = read_json(detections, "detections")
  if isinstance(data, dict) and "boxes_xywh" in data:
    data = (data["image_ids"], data["boxes_xywh"], data["scores"], data["category_ids"])
  if isinstance(data, tuple):
    img, boxes, scores, cats = (np.asarray(x) for x in data)
    n = len(img)
    boxes = boxes.astype(np.float64).reshape(-1, 4) if boxes.size else np.zeros((0, 4))
    if not (boxes.shape[0] == len(scores) == len(cats) == n):
      raise ValueError(f"detection arrays disagree in length: image_ids {n}, boxes "
                       f"{boxes.shape}, scores {len(scores)}, category_ids {len(cats)}")
    img, cats = img.astype(np.int64), cats.astype(np.int64)
    scores = scores.astype(np.float64)
    _check_boxes(boxes, "detection", allow_negative=True)
  elif isinstance(data, list):
    if any(not isinstance(d, dict) for d in data[:1]):
      raise ValueError("detections must be a list of dicts with image_id, category_id, bbox, "
                       "score")
    if data and "detections" in data[0] and "category_id" not in data[0]:
      raise ValueError("these are per-image records (`jaxdet predict`'s detections.json?); "
                       "evaluate COCO results instead: `jaxdet predict --format coco` writes "
                       "coco_results.json")
    img = _column(data, "image_id", "detection", np.int64)
    cats = _column(data, "category_id", "detection", np.int64)
    scores = _column(data, "score", "detection", np.float64)
    boxes = _boxes(data, "detection", allow_negative=True)
  else:
    raise ValueError("detections must be a list of COCO result dicts, a JSON path or arrays")
  if not np.isfinite(scores).all():
    bad = int(np.flatnonzero(~np.isfinite(scores))[0])
    raise ValueError(f"detection #{bad} has a non-finite score")
  img_idx, img_ok = _lookup(gt.image_ids, img)
  if not img_ok.all():
    unknown = np.unique(img[~img_ok])
    raise ValueError(f"detections refer to {len(unknown)} image id(s) absent from the ground "
                     f"truth, e.g. {unknown[:5].tolist()}")
  cat_idx, cat_ok = _lookup(gt.category_ids, cats)
  keep = np.flatnonzero(cat_ok)
  return Detections(img_idx[keep], cat_idx[keep], boxes[keep], scores[keep], keep)


def to_result_dicts(image_ids, boxes_xywh, scores, category_ids) -> list[dict[str, Any]]:
  """Arrays ([D], [D, 4], [D], [D]) to a list of COCO result dicts (for writing JSON)."""
  return [{"image_id": int(i), "category_id": int(c), "bbox": [float(v) for v in b],
           "score": float(s)} for i, b, s, c in zip(image_ids, boxes_xywh, scores, category_ids)]
