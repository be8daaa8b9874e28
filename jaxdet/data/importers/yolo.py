"""YOLO txt labels (one ``<stem>.txt`` per image, lines ``class cx cy w h`` normalized to the
image as displayed) -> raw examples. Class names: ``class_names``, else ``classes.txt`` /
``obj.names`` in the label folder, else ``class0, class1, ...``. An image without a label file has
no objects; a label file without an image is reported.

Already-split data: when ``images_dir`` holds no images but split sub-folders (``train``, ``val``,
``test``; Ultralytics ``images/train`` + ``labels/train``), each sub-folder is a split and its
labels are in the same-named sub-folder of ``annotations`` (or ``<split>/labels`` when the images
are in ``<split>/images``, as Roboflow exports)."""

import glob
import os

import numpy as np

from jaxdet.data import image_io
from jaxdet.data.importers import common

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CLASS_FILES = ("classes.txt", "obj.names")


def _image_size(path):
  try:
    return image_io.image_size(path)  # as displayed: YOLO labels are normalized to it
  except image_io.ImageReadError:  # reported later by the validator with the real error
    return None


def _images_in(folder):
  return sorted(p for p in glob.glob(os.path.join(folder, "*"))
                if p.lower().endswith(IMAGE_EXTENSIONS))


def _split_dirs(images_dir, annotations):
  """``[(images folder, labels folder, split or None)]``."""
  if _images_in(images_dir):
    return [(images_dir, annotations, None)]
  out = []
  for d in sorted(glob.glob(os.path.join(images_dir, "*", ""))):
    d = os.path.dirname(d)
    name = os.path.basename(d)
    split = common.split_of(name)
    if split is None:
      continue
    image_dir = os.path.join(d, "images") if os.path.isdir(os.path.join(d, "images")) else d
    label_dir = next((c for c in (os.path.join(annotations, name, "labels"),
                                  os.path.join(annotations, name)) if os.path.isdir(c)),
                     annotations)
    out.append((image_dir, label_dir, split))
  if len({s for _, _, s in out}) != len(out):
    raise common.DataImportError(f"{images_dir}: several sub-folders for one split: "
                                 f"{[os.path.relpath(i, images_dir) for i, _, _ in out]}")
  if not out:
    raise common.DataImportError(f"{images_dir}: no images found (nor train/val/test sub-folders "
                                 f"of images)")
  return out


def _class_file(folders):
  for folder in folders:
    for candidate in CLASS_FILES:
      path = os.path.join(folder, candidate)
      if os.path.isfile(path):
        with open(path) as f:
          return [line.strip() for line in f if line.strip()]
  return None


def _parse_labels(label_path, size, class_names):
  """``(boxes, class ids, labels, problems)`` of one label file."""
  boxes, ids, labels, problems = [], [], [], []
  with open(label_path) as f:
    lines = [line.split() for line in f if line.strip()]
  for ln, parts in enumerate(lines, 1):
    try:
      cls = int(parts[0])
      cx, cy, w, h = (float(v) for v in parts[1:5])
      if len(parts) != 5:
        raise ValueError(f"expected 5 fields, got {len(parts)}")
    except (ValueError, IndexError) as e:
      problems.append(f"{label_path}:{ln}: malformed YOLO line ({e})")
      break
    ids.append(cls)
    labels.append(class_names[cls] if class_names and 0 <= cls < len(class_names)
                  else f"<class id {cls}>" if class_names else f"class{cls}")
    if size is not None:
      ih, iw = size
      boxes.append([(cx - w / 2) * iw, (cy - h / 2) * ih, (cx + w / 2) * iw, (cy + h / 2) * ih])
    else:
      boxes.append([np.nan] * 4)
  return boxes, ids, labels, problems


def read(images_dir, annotations, *, class_names=None):
  """Reads YOLO labels.

  Args:
    images_dir: folder of images, or of split sub-folders (``train``, ``val``, ``test``).
    annotations: folder of ``.txt`` label files (same stems as the images), or of split
      sub-folders.
    class_names: optional class list (label ids index it).

  Returns:
    ``(class_names tuple, raw examples list)``; already-split data sets each example's split.
  """
  dirs = _split_dirs(images_dir, annotations)
  if class_names is None:
    class_names = _class_file([annotations] + [l for _, l, _ in dirs])
  out, max_id = [], -1
  for image_dir, label_dir, split in dirs:
    stems = set()
    for image_path in _images_in(image_dir):
      stem = os.path.splitext(os.path.basename(image_path))[0]
      stems.add(stem)
      label_path = os.path.join(label_dir, stem + ".txt")
      boxes, labels, problems = [], [], []
      if os.path.isfile(label_path):
        boxes, ids, labels, problems = _parse_labels(label_path, _image_size(image_path),
                                                     class_names)
        max_id = max([max_id] + ids)
      out.append(common.raw_example(image_path, len(out) + 1, source=label_path, boxes=boxes,
                                    labels=labels, problems=problems, split=split))
    for label_path in sorted(glob.glob(os.path.join(label_dir, "*.txt"))):
      stem = os.path.splitext(os.path.basename(label_path))[0]
      if stem not in stems and os.path.basename(label_path) not in CLASS_FILES:
        out.append(common.raw_example(
            os.path.join(image_dir, stem), len(out) + 1, source=label_path, split=split,
            problems=[f"{label_path}: no image {stem}{{{','.join(IMAGE_EXTENSIONS)}}} in "
                      f"{image_dir}"]))
  names = tuple(class_names) if class_names else tuple(f"class{i}" for i in range(max_id + 1))
  return names, out
