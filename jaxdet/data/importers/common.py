"""Validation and writing shared by the importers.

Each format reader returns ``(class_names, raw_examples)``; a raw example is a dict:
``image_path`` (str), ``image_id`` (int), ``boxes`` float64 ``[n, 4]`` xyxy pixel edges,
``labels`` (class names, str), ``is_difficult`` / ``is_crowd`` bool ``[n]``, ``source`` (the
annotation file, for messages) and ``problems`` (parse errors found by the reader).
``import_dataset`` validates every example (image decodes, boxes finite, non-degenerate, inside
the image, known classes), then writes a TFDS ArrayRecord dataset that
``tfds.builder_from_directory`` / ``tfds.data_source`` read back without jaxdet's code.
"""

import io
import os
import sys

import numpy as np

EDGE_TOLERANCE_PX = 1.0  # boxes overflowing the image by at most this are clipped, not rejected
ON_ERROR = ("skip", "fail")


class DataImportError(ValueError):
  """Bad input data; the message names the offending file."""


def raw_example(image_path, image_id, *, source, boxes=(), labels=(), is_difficult=None,
                is_crowd=None, problems=()):
  """Builds a raw example dict (see module docstring)."""
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  n = len(boxes)
  return {
      "image_path": str(image_path), "image_id": int(image_id), "source": str(source),
      "boxes": boxes, "labels": [str(l) for l in labels],
      "is_difficult": np.zeros(n, bool) if is_difficult is None else np.asarray(is_difficult, bool),
      "is_crowd": np.zeros(n, bool) if is_crowd is None else np.asarray(is_crowd, bool),
      "problems": list(problems),
  }


def _load_image(path):
  """``(encoded bytes, h, w)``; RGB JPEG/PNG bytes are kept, anything else is re-encoded as PNG."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with open(path, "rb") as f:
    data = f.read()
  with Image.open(io.BytesIO(data)) as im:
    im.load()  # decodes fully: truncated / corrupt files fail here
    w, h = im.size
    if im.format in ("JPEG", "PNG") and im.mode == "RGB":
      return data, h, w
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="PNG")
    return buf.getvalue(), h, w


def validate(example, class_to_id):
  """Checks one raw example. Returns ``(tfds example dict, None)`` or ``(None, problem)``."""
  path = example["image_path"]
  if example["problems"]:
    return None, example["problems"][0]
  if not os.path.isfile(path):
    return None, f"image file not found: {path}"
  try:
    data, h, w = _load_image(path)
  except Exception as e:  # PIL raises many types for corrupt files
    return None, f"cannot read image {path}: {type(e).__name__}: {e}"
  boxes = example["boxes"]
  for j, (box, label) in enumerate(zip(boxes, example["labels"])):
    where = f"{example['source']}: object {j} ({label!r}, box {box.tolist()})"
    if label not in class_to_id:
      return None, f"{where}: unknown class name {label!r}; known: {sorted(class_to_id)}"
    if not np.all(np.isfinite(box)):
      return None, f"{where}: non-finite coordinates"
    if box[2] <= box[0] or box[3] <= box[1]:
      return None, f"{where}: degenerate box (zero or negative width/height)"
    tol = EDGE_TOLERANCE_PX
    if box[0] < -tol or box[1] < -tol or box[2] > w + tol or box[3] > h + tol:
      return None, f"{where}: box outside the {w}x{h} image {path}"
  if len(boxes) != len(example["labels"]):
    return None, f"{example['source']}: {len(boxes)} boxes but {len(example['labels'])} labels"
  boxes = np.clip(boxes, 0, [w, h, w, h])
  bbox = np.stack([boxes[:, 1] / h, boxes[:, 0] / w, boxes[:, 3] / h, boxes[:, 2] / w], 1)
  return {
      "image": data,
      "image/id": np.int64(example["image_id"]),
      "image/filename": os.path.basename(path),
      "objects": {
          "bbox": np.clip(bbox, 0, 1).astype(np.float32).reshape(-1, 4),
          "label": np.array([class_to_id[l] for l in example["labels"]], np.int64),
          "is_crowd": example["is_crowd"].astype(bool),
          "is_difficult": example["is_difficult"].astype(bool),
      },
  }, None


def parse_split_ratios(text):
  """``"0.8,0.1,0.1"`` -> (0.8, 0.1, 0.1) for train/validation/test (1 to 3 values)."""
  try:
    ratios = tuple(float(x) for x in text.split(","))
  except ValueError as e:
    raise DataImportError(f"--split-ratios must be comma-separated numbers, got {text!r}") from e
  if not 1 <= len(ratios) <= 3 or any(r < 0 or not np.isfinite(r) for r in ratios) or not sum(
      ratios) > 0:
    raise DataImportError(f"--split-ratios needs 1-3 non-negative numbers with a positive sum, "
                          f"got {text!r}")
  return ratios


def assign_splits(n, *, split="train", split_ratios=None, seed=0):
  """Split name of each of ``n`` examples: all ``split``, or a seeded shuffle cut by ratios."""
  if split_ratios is None:
    return [split] * n
  names = ("train", "validation", "test")[:len(split_ratios)]
  ratios = np.asarray(split_ratios, np.float64) / np.sum(split_ratios)
  bounds = np.round(np.cumsum(ratios) * n).astype(int)
  order = np.random.default_rng(seed).permutation(n)
  out = [None] * n
  start = 0
  for name, stop in zip(names, bounds):
    for i in order[start:stop]:
      out[i] = name
    start = stop
  return out


def _ensure_importlib_resources():
  """TFDS 4.9's ``download_and_prepare`` lazily imports the ``importlib_resources`` backport,
  which it does not declare; on Python >= 3.11 the standard library module is equivalent."""
  try:
    import importlib_resources  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    import importlib.resources  # pylint: disable=g-import-not-at-top
    import importlib.resources.abc  # pylint: disable=g-import-not-at-top,unused-import
    sys.modules["importlib_resources"] = importlib.resources


def import_dataset(class_names, raw_examples, *, name, data_dir, split="train", split_ratios=None,
                   on_error="skip", log=None):
  """Validates raw examples and writes the TFDS dataset ``name`` into ``data_dir``.

  Args:
    class_names: sequence of class names (label ids index it).
    raw_examples: list of raw example dicts.
    name: TFDS dataset name (lower-case letters, digits and underscores).
    data_dir: TFDS data dir to write into.
    split: split of every example when ``split_ratios`` is None.
    split_ratios: optional (train, validation, test) ratios; a seeded shuffle assigns splits.
    on_error: ``"skip"`` (report and drop a bad image) or ``"fail"`` (raise on the first).
    log: a ``print``-like function for per-file messages (stderr by default).

  Returns:
    dict ``num_examples`` (per split), ``num_skipped``, ``problems`` (list of str), ``path``.

  Raises:
    DataImportError: bad data with ``on_error="fail"``, bad arguments, or nothing left to write.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from jaxdet.data import features as features_lib  # pylint: disable=g-import-not-at-top
  log = log or (lambda msg: print(msg, file=sys.stderr))
  if on_error not in ON_ERROR:
    raise DataImportError(f"--on-error must be one of {ON_ERROR}, got {on_error!r}")
  if not name or not all(c.isalnum() or c == "_" for c in name) or not name[0].isalpha() or (
      name != name.lower()):
    raise DataImportError(f"dataset name must be lower-case letters, digits and '_' starting with "
                          f"a letter, got {name!r}")
  if not class_names:
    raise DataImportError("no class names: pass --classes or annotations with categories")
  if len(set(class_names)) != len(class_names):
    raise DataImportError(f"duplicate class names in {list(class_names)}")
  class_to_id = {c: i for i, c in enumerate(class_names)}
  good, problems = [], []
  for ex in raw_examples:
    tf_example, problem = validate(ex, class_to_id)
    if problem is None:
      good.append(tf_example)
      continue
    if on_error == "fail":
      raise DataImportError(problem)
    problems.append(problem)
    log(f"skipping: {problem}")
  if not good:
    raise DataImportError(f"no valid examples to import ({len(problems)} skipped)")
  ids = [int(ex["image/id"]) for ex in good]
  if len(set(ids)) != len(ids):
    raise DataImportError("duplicate image ids in the annotations")
  splits = assign_splits(len(good), split=split, split_ratios=split_ratios)
  split_datasets = {}
  for ex, s in zip(good, splits):
    split_datasets.setdefault(s, []).append((str(int(ex["image/id"])), ex))  # (key, example)
  features = features_lib.detection_features(class_names, with_filename=True)
  _ensure_importlib_resources()
  builder = tfds.dataset_builders.store_as_tfds_dataset(
      name=name, version="1.0.0", features=features, split_datasets=split_datasets,
      data_dir=data_dir, file_format="array_record",
      description=f"Imported by `jaxdet data import` ({len(good)} images).",
      disable_shuffling=True)  # keep the annotation order
  return {"num_examples": {k: len(v) for k, v in split_datasets.items()},
          "num_skipped": len(problems), "problems": problems, "path": str(builder.data_dir)}
