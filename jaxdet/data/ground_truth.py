"""Dataset metadata and COCO-format ground truth in original image pixels."""

import dataclasses

import numpy as np

from jaxdet.data import sources
from jaxdet.data import tfds_maps


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the trainer/evaluator need to know about a dataset.

  Attributes:
    name: the TFDS name.
    class_names: tuple of str, indexed by class id.
    num_examples: dict split name -> number of examples.
  """
  name: str
  class_names: tuple
  num_examples: dict


def dataset_info(dataset, data_dir=None):
  """``DatasetInfo`` of a TFDS detection dataset (builds `shapes` on first use).

  Args:
    dataset: TFDS name.
    data_dir: TFDS data dir (TFDS default when None).

  Returns:
    ``DatasetInfo``.
  """
  b = sources.builder(dataset, data_dir)
  return DatasetInfo(name=dataset, class_names=sources.class_names(b),
                     num_examples={k: int(v.num_examples) for k, v in b.info.splits.items()})


def coco_ground_truth(dataset, split, data_dir=None):
  """COCO annotation dict of a split, boxes in original image pixels.

  Category ids are the 0-based class ids (the model's class indices). ``iscrowd`` carries COCO's
  crowd flag and ``ignore`` is set for crowd and VOC ``difficult`` boxes (pycocotools treats
  ``iscrowd`` boxes as ignore regions; VOC evaluators read ``ignore``/``difficult``). Images are
  not decoded (only their headers are read for the size).

  Args:
    dataset: TFDS name.
    split: split name.
    data_dir: TFDS data dir.

  Returns:
    dict with ``images`` [{id, width, height}], ``annotations`` [{id, image_id, category_id,
    bbox [x, y, w, h], area, iscrowd, ignore, difficult}], ``categories`` [{id, name}].
  """
  source, b = _open_records(dataset, split, data_dir)
  images, annotations = [], []
  for index in range(len(source)):
    record = tfds_maps.to_jaxdet_record(source[index], index)
    image = record["image"]
    h, w = (image.shape[:2] if isinstance(image, np.ndarray) and image.ndim == 3
            else sources.image_size_from_bytes(image))
    image_id = int(record["image/id"])
    images.append({"id": image_id, "width": int(w), "height": int(h)})
    obj = record["objects"]
    bbox = np.asarray(obj["bbox"], np.float64).reshape(-1, 4)
    labels = np.asarray(obj["label"], np.int64).reshape(-1)
    n = min(len(bbox), len(labels))
    crowd = np.asarray(obj["is_crowd"], bool).reshape(-1)
    difficult = np.asarray(obj["is_difficult"], bool).reshape(-1)
    for j in range(n):
      ymin, xmin, ymax, xmax = bbox[j]
      x0, x1 = sorted((xmin * w, xmax * w))
      y0, y1 = sorted((ymin * h, ymax * h))
      if not np.all(np.isfinite([x0, y0, x1, y1])):
        continue
      is_crowd = bool(crowd[j]) if j < len(crowd) else False
      is_difficult = bool(difficult[j]) if j < len(difficult) else False
      annotations.append({
          "id": len(annotations) + 1, "image_id": image_id, "category_id": int(labels[j]),
          "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
          "area": float((x1 - x0) * (y1 - y0)),
          "iscrowd": int(is_crowd), "ignore": int(is_crowd or is_difficult),
          "difficult": int(is_difficult),
      })
  categories = [{"id": i, "name": n} for i, n in enumerate(sources.class_names(b))]
  return {"images": images, "annotations": annotations, "categories": categories}


def _open_records(dataset, split, data_dir):
  """`sources.open_split` with the images and masks left encoded (their bytes are not needed)."""
  source, b = sources.open_split(dataset, split, data_dir, decode_image=False,
                                 decode_mask=False)
  try:
    if len(source):
      source[0]
  except ValueError:  # e.g. tfds.testing.mock_data cannot serialize its own random records
    source, b = sources.open_split(dataset, split, data_dir, decode_image=True,
                                   decode_mask=False)
  return source, b


def has_boxes(dataset, split, data_dir=None):
  """Whether any example of a split has a box (crowd and difficult ones count).

  Reads the records in order, without decoding images, up to the first one with a box: one
  record for a labelled dataset; the whole split only when it has no box at all.

  Args:
    dataset: TFDS name.
    split: split name (TFDS slicing such as ``train[:10%]`` is accepted).
    data_dir: TFDS data dir (TFDS default when None).

  Returns:
    bool.
  """
  source, _ = _open_records(dataset, split, data_dir)
  for index in range(len(source)):
    obj = tfds_maps.to_jaxdet_record(source[index], index)["objects"]
    if min(np.size(obj.get("bbox", ())) // 4, np.size(obj.get("label", ()))) > 0:
      return True
  return False


def mask_examples(dataset, split, data_dir=None, *, limit=None):
  """The images and masks of a split at their original size, in split order: what a
  segmentation evaluation at original resolution compares predictions with.

  Args:
    dataset: TFDS name of a dataset with ``segmentation/mask``.
    split: split name.
    data_dir: TFDS data dir (TFDS default when None).
    limit: read at most this many examples.

  Yields:
    dicts ``image`` uint8 ``[H, W, 3]``, ``mask`` uint8 ``[H, W]`` (0 background, label + 1, 255
    ignore), ``image_id`` int64.

  Raises:
    ValueError: the dataset has no ``segmentation/mask`` (named).
  """
  source, b = sources.open_split(dataset, split, data_dir)
  sources.require_masks(b, dataset)
  n = len(source) if limit is None else min(int(limit), len(source))
  for index in range(n):
    ex = sources.record_to_example(tfds_maps.to_jaxdet_record(source[index], index), masks=True)
    yield {"image": ex["image"], "mask": ex["mask"], "image_id": ex["image_id"]}
