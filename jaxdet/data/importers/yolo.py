"""YOLO txt labels (one ``<stem>.txt`` per image, lines ``class cx cy w h`` normalized to the
image as displayed) -> raw examples. Class names: ``class_names``, else ``classes.txt`` /
``obj.names`` in the label folder, else ``class0, class1, ...``. An image without a label file has
no objects; a label file without an image is reported.

Already-split data: when ``images_dir`` holds no images but split sub-folders (``train``, ``val``,
``test``; Ultralytics ``images/train`` + ``labels/train``), each sub-folder is a split and its
labels are in the same-named sub-folder of ``annotations`` (or ``<split>/labels`` when the images
are in ``<split>/images``, as Roboflow exports).

An Ultralytics ``data.yaml`` can be given as ``annotations``: its ``train`` / ``val`` / ``test``
entries (a folder of images, a ``.txt`` list of image paths, or a list of those; relative to its
``path``, else to the yaml's folder) are the splits, its ``names`` the classes, and each image's
labels are in the ``labels`` folder beside its ``images`` folder (``.../images/x.jpg`` ->
``.../labels/x.txt``). ``images_dir`` is not used then."""

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


def _yaml_names(names):
  if isinstance(names, dict):  # {0: a, 1: b}
    return [str(names[k]) for k in sorted(names, key=int)]
  return [str(n) for n in names] if names else None


def _label_path(image_path):
  """Ultralytics' rule: the last ``images`` folder of the path becomes ``labels``."""
  head, tail = os.path.split(os.path.splitext(image_path)[0])
  parts = head.split(os.sep)
  if "images" in parts:
    i = len(parts) - 1 - parts[::-1].index("images")
    parts[i] = "labels"
  return os.path.join(os.sep.join(parts), tail + ".txt")


def _read_yaml(yaml_path):
  """``(class names or None, [(split, [image paths])])`` of an Ultralytics data.yaml."""
  import yaml  # pylint: disable=g-import-not-at-top
  try:
    with open(yaml_path) as f:
      cfg = yaml.safe_load(f)
    if not isinstance(cfg, dict):
      raise ValueError("not a mapping")
  except (OSError, ValueError, yaml.YAMLError) as e:
    raise common.DataImportError(f"{yaml_path}: not a readable data.yaml: {e}") from e
  root = os.path.join(os.path.dirname(os.path.abspath(yaml_path)), str(cfg.get("path") or ""))
  splits = []
  for key, split in (("train", "train"), ("val", "validation"), ("test", "test")):
    entries = cfg.get(key)
    if not entries:
      continue
    paths = []
    for entry in entries if isinstance(entries, list) else [entries]:
      entry = os.path.normpath(os.path.join(root, str(entry)))
      if os.path.isdir(entry):
        paths += _images_in(entry)
      elif os.path.isfile(entry):  # a list of image paths, relative to the root
        with open(entry) as f:
          paths += [os.path.normpath(os.path.join(root, l.strip())) for l in f if l.strip()]
      else:
        raise common.DataImportError(f"{yaml_path}: {key}: {entry} is neither a folder nor a "
                                     f"file")
    splits.append((split, paths))
  if not splits:
    raise common.DataImportError(f"{yaml_path}: no train / val / test entries")
  return _yaml_names(cfg.get("names")), splits


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
      sub-folders, or an Ultralytics ``data.yaml``.
    class_names: optional class list (label ids index it).

  Returns:
    ``(class_names tuple, raw examples list)``; already-split data sets each example's split.
  """
  if annotations.lower().endswith((".yaml", ".yml")):
    names, yaml_splits = _read_yaml(annotations)
    class_names = class_names or names
    splits = [(split, [(p, _label_path(p)) for p in paths],
               sorted({os.path.dirname(_label_path(p)) for p in paths}))
              for split, paths in yaml_splits]
  else:
    dirs = _split_dirs(images_dir, annotations)
    if class_names is None:
      class_names = _class_file([annotations] + [l for _, l, _ in dirs])
    splits = [(split, [(p, os.path.join(label_dir, os.path.splitext(os.path.basename(p))[0] +
                                        ".txt")) for p in _images_in(image_dir)], [label_dir])
              for image_dir, label_dir, split in dirs]
  out, max_id = [], -1
  for split, pairs, label_dirs in splits:
    image_dirs = ", ".join(sorted({os.path.dirname(p) for p, _ in pairs})) or "its split folder"
    for image_path, label_path in pairs:
      boxes, labels, problems = [], [], []
      if os.path.isfile(label_path):
        boxes, ids, labels, problems = _parse_labels(label_path, _image_size(image_path),
                                                     class_names)
        max_id = max([max_id] + ids)
      out.append(common.raw_example(image_path, len(out) + 1, source=label_path, boxes=boxes,
                                    labels=labels, problems=problems, split=split))
    used = {os.path.abspath(l) for _, l in pairs}
    for label_dir in label_dirs:  # label files nobody refers to: their image is missing
      for label_path in sorted(glob.glob(os.path.join(label_dir, "*.txt"))):
        if os.path.abspath(label_path) not in used and (
            os.path.basename(label_path) not in CLASS_FILES):
          out.append(common.raw_example(
              label_path, len(out) + 1, source=label_path, split=split,
              problems=[f"{label_path}: label file without an image (no image with the same "
                        f"name and one of {', '.join(IMAGE_EXTENSIONS)} in {image_dirs})"]))
  names = tuple(class_names) if class_names else tuple(f"class{i}" for i in range(max_id + 1))
  return names, out
