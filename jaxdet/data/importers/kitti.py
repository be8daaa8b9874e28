"""KITTI object labels (``label_2/<stem>.txt``: ``type truncated occluded alpha x1 y1 x2 y2 ...``)
-> raw examples. ``DontCare`` regions are kept as crowd (ignore) boxes of the first class.
Class names: ``class_names``, else the sorted types found (without ``DontCare``).

A label line has a type name and exactly 14 numbers. A type name of several words
(``coffee cup 0.00 0 ...``) is read as the words before the 14 numbers, joined by one space; a line
with another count of numbers (e.g. a results file's trailing score, or a name ending in a number)
is reported with its file and line, never shifted."""

import glob
import os

from jaxdet.data.importers import common
from jaxdet.data.importers import yolo

DONT_CARE = "DontCare"
NUM_FIELDS = 14  # truncated occluded alpha x1 y1 x2 y2 h w l x y z rotation_y


def _is_number(text):
  try:
    float(text)
    return True
  except ValueError:
    return False


def parse_line(parts):
  """``(type name, [x1, y1, x2, y2])`` of one split KITTI label line.

  Raises:
    ValueError: not a type name followed by exactly ``NUM_FIELDS`` numbers.
  """
  k = 0
  while k < len(parts) and _is_number(parts[len(parts) - 1 - k]):
    k += 1
  name = parts[:len(parts) - k]
  if not name or k != NUM_FIELDS:
    raise ValueError(f"expected a type name and {NUM_FIELDS} numbers (truncated occluded alpha "
                     f"x1 y1 x2 y2 h w l x y z rotation_y), got {len(name)} name word(s) and {k} "
                     f"trailing number(s)")
  return " ".join(name), [float(v) for v in parts[len(parts) - k + 3:len(parts) - k + 7]]


def read(images_dir, annotations, *, class_names=None):
  """Reads a folder of KITTI label files.

  Args:
    images_dir: folder of images (same stems as the label files).
    annotations: folder of ``.txt`` label files.
    class_names: optional class list.

  Returns:
    ``(class_names tuple, raw examples list)``.
  """
  files = sorted(glob.glob(os.path.join(annotations, "*.txt")))
  if not files:
    raise common.DataImportError(f"{annotations}: no .txt label files found")
  parsed, found = [], set()
  for label_path in files:
    stem = os.path.splitext(os.path.basename(label_path))[0]
    image_path = next((p for ext in yolo.IMAGE_EXTENSIONS
                       for p in [os.path.join(images_dir, stem + ext)] if os.path.isfile(p)), None)
    rows, problems = [], []
    if image_path is None:
      image_path = os.path.join(images_dir, stem)
      problems.append(f"{label_path}: label file without an image (no {stem} with one of "
                      f"{', '.join(yolo.IMAGE_EXTENSIONS)} in {images_dir})")
    with open(label_path) as f:
      for ln, line in enumerate(f, 1):
        parts = line.split()
        if not parts:
          continue
        try:
          name, box = parse_line(parts)
        except ValueError as e:
          problems.append(f"{label_path}:{ln}: malformed KITTI line ({e}): {line.strip()!r}")
          break
        rows.append((name, box))
        if name != DONT_CARE:
          found.add(name)
    parsed.append((image_path, label_path, rows, problems))
  names = tuple(class_names) if class_names else tuple(sorted(found))
  out = []
  for index, (image_path, label_path, rows, problems) in enumerate(parsed):
    labels = [names[0] if t == DONT_CARE and names else t for t, _ in rows]
    crowd = [t == DONT_CARE for t, _ in rows]
    boxes = [b for _, b in rows]  # float pixel coordinates, used as box edges (as torchvision)
    out.append(common.raw_example(image_path, index + 1, source=label_path, boxes=boxes,
                                  labels=labels, is_crowd=crowd, problems=problems))
  return names, out
