"""Validation and writing shared by the importers.

Each format reader returns ``(class_names, raw_examples)``; a raw example is a dict:
``image_path`` (str), ``image_id`` (int), ``boxes`` float64 ``[n, 4]`` xyxy pixel edges,
``labels`` (class names, str), ``is_difficult`` / ``is_crowd`` bool ``[n]``, ``source`` (the
annotation file, for messages), ``problems`` (parse errors found by the reader) and ``split``
(the split of data that is already split, else None), and ``mask`` (None, the path of a
palette / grayscale PNG of class ids, or a callable ``(h, w, class_to_id) -> (uint8 [h, w], n)``
that rasterizes one, ``n`` counting the pixels it mapped to ignore).
``import_dataset`` validates every example (image decodes, boxes finite, non-degenerate, not
entirely outside the image as displayed, known classes), clips boxes partly outside to the
image, then writes a TFDS ArrayRecord dataset that ``tfds.builder_from_directory`` /
``tfds.data_source`` read back without jaxdet's code.
"""

import contextlib
import io
import os
import shutil
import sys
import tempfile
import warnings

import numpy as np

from jaxdet.data import image_io

EDGE_TOLERANCE_PX = 1.0  # overflow up to this is rounding: clipped without being counted
ON_ERROR = ("skip", "fail")


class DataImportError(ValueError):
  """Bad input data; the message names the offending file."""


def raw_example(image_path, image_id, *, source, boxes=(), labels=(), is_difficult=None,
                is_crowd=None, problems=(), split=None, mask=None):
  """Builds a raw example dict (see module docstring)."""
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  n = len(boxes)
  return {
      "image_path": str(image_path), "image_id": int(image_id), "source": str(source),
      "boxes": boxes, "labels": [str(l) for l in labels],
      "is_difficult": np.zeros(n, bool) if is_difficult is None else np.asarray(is_difficult, bool),
      "is_crowd": np.zeros(n, bool) if is_crowd is None else np.asarray(is_crowd, bool),
      "problems": list(problems), "split": split, "mask": mask,
  }


def read_mask(example, h, w, class_to_id):
  """The semantic mask of a raw example, checked against its image (``h`` x ``w`` as displayed).

  Palette indices ``0..C`` are class ids (index k + 1 is class k of the dataset's class list),
  255 is ignore; any other value becomes 255 and is counted.

  Returns:
    ``(mask [h, w] uint8, num_out_of_range, None)`` or ``(None, 0, problem)``.
  """
  from jaxdet.data import masks  # pylint: disable=g-import-not-at-top
  src = example.get("mask")
  if src is None:
    return None, 0, f"{example['source']}: no mask for {example['image_path']}"
  try:
    if callable(src):
      mask, bad = src(h, w, class_to_id)
      where = example["source"]
    else:
      mask, bad = masks.class_index_mask(masks.read_index_png(src), len(class_to_id))
      where = src
    if mask.shape != (h, w):
      return None, 0, (f"{where}: mask of size {mask.shape[1]}x{mask.shape[0]} (w x h) but its "
                       f"image {example['image_path']} is {w}x{h}")
  except ValueError as e:
    return None, 0, str(e)
  return mask, bad, None


def validate(example, class_to_id, *, masks=False):
  """Checks one raw example.

  A box partly outside the image (as displayed, after the EXIF transpose) is clipped to it; a box
  entirely outside, or degenerate (before or after clipping), is a problem. With ``masks``, a
  missing mask or one of another size than its image is a problem too.

  Returns:
    ``(tfds example dict, None, num_clipped)`` or ``(None, problem, 0)``; with ``masks`` the
    example dict holds ``_mask_out_of_range`` (pixels mapped to ignore), removed before writing.
  """
  path = example["image_path"]
  if example["problems"]:
    return None, example["problems"][0], 0
  if not os.path.isfile(path):
    return None, f"image file not found: {path} (named by {example['source']})", 0
  try:
    data, h, w = image_io.encode_for_dataset(path)
  except image_io.ImageReadError as e:
    return None, str(e), 0
  boxes = example["boxes"]
  if len(boxes) != len(example["labels"]):
    return None, f"{example['source']}: {len(boxes)} boxes but {len(example['labels'])} labels", 0
  clipped = np.clip(boxes, 0, [w, h, w, h])
  for j, (box, label) in enumerate(zip(boxes, example["labels"])):
    where = f"{example['source']}: object {j} ({label!r}, box {box.tolist()})"
    if label not in class_to_id:
      return None, f"{where}: unknown class name {label!r}; known: {sorted(class_to_id)}", 0
    if not np.all(np.isfinite(box)):
      return None, f"{where}: non-finite coordinates", 0
    if box[2] <= box[0] or box[3] <= box[1]:
      return None, f"{where}: degenerate box (zero or negative width/height)", 0
    c = clipped[j]
    if c[2] <= c[0] or c[3] <= c[1]:
      return None, (f"{where}: box entirely outside the image {path} ({w} wide, {h} high as "
                    f"displayed)"), 0
  # Overflow within EDGE_TOLERANCE_PX is rounding (e.g. YOLO's normalized floats), not clipping.
  tol = EDGE_TOLERANCE_PX
  num_clipped = int(np.sum(np.any((boxes[:, :2] < -tol) | (boxes[:, 2:] > np.array([w, h]) + tol),
                                  axis=1)))
  extra = {}
  if masks:
    from jaxdet.data import masks as masks_lib  # pylint: disable=g-import-not-at-top
    mask, bad, problem = read_mask(example, h, w, class_to_id)
    if problem is not None:
      return None, problem, 0
    extra = {masks_lib.MASK_FEATURE: masks_lib.encode_mask(mask), "_mask_out_of_range": bad}
  boxes = clipped
  bbox = np.stack([boxes[:, 1] / h, boxes[:, 0] / w, boxes[:, 3] / h, boxes[:, 2] / w], 1)
  return {
      **extra,
      "image": data,
      "image/id": np.int64(example["image_id"]),
      "image/filename": os.path.basename(path),
      "objects": {
          "bbox": np.clip(bbox, 0, 1).astype(np.float32).reshape(-1, 4),
          "label": np.array([class_to_id[l] for l in example["labels"]], np.int64),
          "is_crowd": example["is_crowd"].astype(bool),
          "is_difficult": example["is_difficult"].astype(bool),
      },
  }, None, num_clipped


SPLIT_NAMES = ("train", "validation", "test")


def check_split_ratios(ratios, *, shown=None):
  """Refuses ratios that are not 1-3 finite numbers in [0, 1] summing to 1 with train > 0.

  Returns:
    ``ratios`` as a tuple of floats.

  Raises:
    DataImportError: naming ``shown`` (what the user typed) or the ratios.
  """
  ratios = tuple(float(r) for r in ratios)
  shown = shown if shown is not None else ",".join(f"{r:g}" for r in ratios)
  if not 1 <= len(ratios) <= 3:
    problem = f"needs 1 to 3 values (train[,validation[,test]]), got {len(ratios)}"
  elif not all(np.isfinite(r) and 0 <= r <= 1 for r in ratios):
    problem = "values must be between 0 and 1"
  elif abs(sum(ratios) - 1) > 1e-3:
    problem = f"values must sum to 1, they sum to {sum(ratios):g}"
  elif ratios[0] <= 0:
    problem = "the train ratio must be positive"
  else:
    return ratios
  raise DataImportError(f"--split-ratios {shown!r}: {problem} (e.g. 0.8,0.1,0.1)")


def parse_split_ratios(text):
  """``"0.8,0.1,0.1"`` -> (0.8, 0.1, 0.1) for train/validation/test (1 to 3 values, sum 1)."""
  try:
    ratios = tuple(float(x) for x in text.split(","))
  except ValueError as e:
    raise DataImportError(f"--split-ratios must be comma-separated numbers, got {text!r}") from e
  return check_split_ratios(ratios, shown=text)


def assign_splits(n, *, split="train", split_ratios=None, seed=0):
  """Split name of each of ``n`` examples: all ``split``, or a seeded shuffle cut by ratios."""
  if split_ratios is None:
    return [split] * n
  names = SPLIT_NAMES[:len(split_ratios)]
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


def split_of(name):
  """The split a file or folder name stands for (``instances_val2017`` -> ``validation``), or
  None. Used to recognise data that is already split."""
  tokens = [t for t in "".join(c if c.isalpha() else " " for c in name.lower()).split() if t]
  found = {s for t in tokens
           for s, words in (("train", ("train", "training")),
                            ("validation", ("val", "valid", "validation", "dev")),
                            ("test", ("test", "testing")))
           if t in words}
  return found.pop() if len(found) == 1 else None


def _ensure_importlib_resources():
  """TFDS 4.9's ``download_and_prepare`` lazily imports the ``importlib_resources`` backport,
  which it does not declare; on Python >= 3.11 the standard library module is equivalent."""
  try:
    import importlib_resources  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    import importlib.resources  # pylint: disable=g-import-not-at-top
    import importlib.resources.abc  # pylint: disable=g-import-not-at-top,unused-import
    sys.modules["importlib_resources"] = importlib.resources


def _check_name(name, data_dir, overwrite):
  if not name or not all(c.isalnum() or c == "_" for c in name) or not name[0].isalpha() or (
      name != name.lower()):
    raise DataImportError(f"dataset name must be lower-case letters, digits and '_' starting with "
                          f"a letter, got {name!r}")
  target = os.path.join(data_dir, name)
  if os.path.exists(target) and not overwrite:
    raise DataImportError(f"dataset {name!r} already exists in {target}; pass --overwrite to "
                          f"replace it, or choose another --name")
  return target


def _write(name, data_dir, target, features, split_datasets, num_images):
  """Writes into a fresh folder under ``data_dir`` and then replaces ``target``: an existing
  dataset is only removed once the new one is complete."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  _ensure_importlib_resources()
  os.makedirs(data_dir, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{name}-import-", dir=data_dir)
  try:
    # TFDS prints "Downloading and preparing dataset Unknown size ..." to stdout: not a download.
    with contextlib.redirect_stdout(io.StringIO()):
      builder = tfds.dataset_builders.store_as_tfds_dataset(
          name=name, version="1.0.0", features=features, split_datasets=split_datasets,
          data_dir=tmp, file_format="array_record",
          description=f"Imported by `jaxdet data import` ({num_images} images).",
          disable_shuffling=True)  # keep the annotation order
    version_dir = os.path.relpath(str(builder.data_dir), os.path.join(tmp, name))
    if os.path.exists(target):
      shutil.rmtree(target)
    os.replace(os.path.join(tmp, name), target)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return os.path.join(target, version_dir)


def import_dataset(class_names, raw_examples, *, name, data_dir, split="train", split_ratios=None,
                   on_error="skip", log=None, overwrite=False, masks=False):
  """Validates raw examples and writes the TFDS dataset ``name`` into ``data_dir``.

  Args:
    class_names: sequence of class names (label ids index it).
    raw_examples: list of raw example dicts.
    name: TFDS dataset name (lower-case letters, digits and underscores).
    data_dir: TFDS data dir to write into.
    split: split of every example when ``split_ratios`` is None and the data is not already
      split (raw examples with a ``split`` keep it).
    split_ratios: optional (train, validation, test) ratios; a seeded shuffle assigns splits.
    on_error: ``"skip"`` (report and drop a bad image) or ``"fail"`` (raise on the first).
    log: a ``print``-like function for per-file messages (stderr by default).
    overwrite: replace an existing dataset ``name`` in ``data_dir`` (else that is an error).
    masks: write the ``segmentation/mask`` feature from each raw example's ``mask`` (an image
      without one, or with one of another size, is a problem).

  Returns:
    dict ``num_examples`` and ``num_boxes`` (per split; a split without any box is written
    with a warning, as training refuses it), ``num_skipped``, ``num_clipped`` (boxes clipped
    to their image), ``problems`` (list of str), ``path``; with ``masks``, ``num_mask_out_of_range``
    (mask pixels whose value was outside the classes and 255, written as 255) and
    ``num_masks_out_of_range`` (the images that had any; a warning says both).

  Raises:
    DataImportError: bad data with ``on_error="fail"``, bad arguments, an existing dataset
      without ``overwrite``, or nothing left to write. Nothing is written then.
  """
  from jaxdet.data import features as features_lib  # pylint: disable=g-import-not-at-top
  log = log or (lambda msg: print(msg, file=sys.stderr))
  if on_error not in ON_ERROR:
    raise DataImportError(f"--on-error must be one of {ON_ERROR}, got {on_error!r}")
  data_dir = os.path.expanduser(str(data_dir))
  target = _check_name(name, data_dir, overwrite)
  presplit = sorted({ex["split"] for ex in raw_examples if ex.get("split")})
  if split_ratios is not None:
    split_ratios = check_split_ratios(split_ratios)
    if presplit:
      raise DataImportError(f"the data is already split into {presplit}; drop --split-ratios to "
                            f"keep those splits")
  if not class_names:
    raise DataImportError("no class names: pass --classes or annotations with categories")
  if len(set(class_names)) != len(class_names):
    raise DataImportError(f"duplicate class names in {list(class_names)}")
  class_to_id = {c: i for i, c in enumerate(class_names)}
  good, good_splits, problems, num_clipped = [], [], [], 0
  bad_pixels, bad_masks = 0, 0
  for ex in raw_examples:
    tf_example, problem, clipped = validate(ex, class_to_id, masks=masks)
    if problem is None and masks:
      bad = tf_example.pop("_mask_out_of_range")
      bad_pixels, bad_masks = bad_pixels + bad, bad_masks + (bad > 0)
    if problem is None:
      good.append(tf_example)
      good_splits.append(ex.get("split"))
      num_clipped += clipped
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
  splits = good_splits if presplit else assign_splits(len(good), split=split,
                                                      split_ratios=split_ratios)
  split_datasets = {}
  for ex, s in zip(good, splits):
    split_datasets.setdefault(s, []).append((str(int(ex["image/id"])), ex))  # (key, example)
  num_boxes = {k: sum(len(ex["objects"]["label"]) for _, ex in v)
               for k, v in split_datasets.items()}
  for split_name, count in num_boxes.items():
    if count == 0:
      # Imported anyway (masks, or boxes to come), but `jaxdet train` refuses such a split.
      use = ("; its masks can still train a segmentation model" if masks else
             ": a detector can neither learn from nor be evaluated on it")
      msg = (f"the imported dataset {name!r} has no boxes in split {split_name!r} "
             f"({len(split_datasets[split_name])} images){use}")
      warnings.warn(msg, stacklevel=2)
      log(f"warning: {msg}")
  if bad_pixels:
    msg = (f"{bad_pixels} mask pixel(s) in {bad_masks} image(s) had values outside the class "
           f"ids 0..{len(class_names)} and 255; written as 255 (ignore)")
    warnings.warn(msg, stacklevel=2)
    log(f"warning: {msg}")
  features = features_lib.detection_features(class_names, with_filename=True, with_masks=masks)
  path = _write(name, data_dir, target, features, split_datasets, len(good))
  order = {"train": 0, "validation": 1, "test": 2}  # the report lists splits in this order
  report = {"num_examples": {k: len(split_datasets[k])
                             for k in sorted(split_datasets, key=lambda k: (order.get(k, 3), k))},
            "num_boxes": {k: num_boxes[k] for k in sorted(num_boxes,
                                                          key=lambda k: (order.get(k, 3), k))},
            "num_skipped": len(problems), "num_clipped": num_clipped, "problems": problems,
            "path": path}
  if masks:
    report.update(num_mask_out_of_range=bad_pixels, num_masks_out_of_range=bad_masks)
  return report
