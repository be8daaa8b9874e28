"""KITTI object labels (``label_2/<stem>.txt``: ``type truncated occluded alpha x1 y1 x2 y2 ...``)
-> raw examples. ``DontCare`` regions are kept as crowd (ignore) boxes of the first class.
Class names: ``class_names``, else the sorted types found (without ``DontCare``)."""

import glob
import os

from jaxdet.data.importers import common
from jaxdet.data.importers import yolo

DONT_CARE = "DontCare"


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
                       for p in [os.path.join(images_dir, stem + ext)] if os.path.isfile(p)),
                      os.path.join(images_dir, stem + ".png"))
    rows, problems = [], []
    with open(label_path) as f:
      for ln, line in enumerate(f, 1):
        parts = line.split()
        if not parts:
          continue
        try:
          box = [float(v) for v in parts[4:8]]
          if len(box) != 4:
            raise ValueError(f"expected at least 8 fields, got {len(parts)}")
        except ValueError as e:
          problems.append(f"{label_path}:{ln}: malformed KITTI line ({e})")
          break
        rows.append((parts[0], box))
        if parts[0] != DONT_CARE:
          found.add(parts[0])
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
