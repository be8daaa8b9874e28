"""YOLO txt labels (one ``<stem>.txt`` per image, lines ``class cx cy w h`` normalized) -> raw
examples. Class names: ``class_names``, else ``classes.txt`` / ``obj.names`` in the label folder,
else ``class0, class1, ...``. An image without a label file has no objects."""

import glob
import os

import numpy as np

from jaxdet.data.importers import common

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _image_size(path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as im:
      return im.size[1], im.size[0]
  except Exception:  # reported later by the validator with the real error
    return None


def read(images_dir, annotations, *, class_names=None):
  """Reads YOLO labels.

  Args:
    images_dir: folder of images.
    annotations: folder of ``.txt`` label files (same stems as the images).
    class_names: optional class list (label ids index it).

  Returns:
    ``(class_names tuple, raw examples list)``.
  """
  if class_names is None:
    for candidate in ("classes.txt", "obj.names"):
      path = os.path.join(annotations, candidate)
      if os.path.isfile(path):
        with open(path) as f:
          class_names = [line.strip() for line in f if line.strip()]
        break
  images = sorted(p for p in glob.glob(os.path.join(images_dir, "*"))
                  if p.lower().endswith(IMAGE_EXTENSIONS))
  if not images:
    raise common.DataImportError(f"{images_dir}: no images found")
  out, max_id = [], -1
  for index, image_path in enumerate(images):
    stem = os.path.splitext(os.path.basename(image_path))[0]
    label_path = os.path.join(annotations, stem + ".txt")
    boxes, labels, problems = [], [], []
    if os.path.isfile(label_path):
      size = _image_size(image_path)
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
        max_id = max(max_id, cls)
        labels.append(class_names[cls] if class_names and 0 <= cls < len(class_names)
                      else f"<class id {cls}>" if class_names else f"class{cls}")
        if size is not None:
          ih, iw = size
          boxes.append([(cx - w / 2) * iw, (cy - h / 2) * ih, (cx + w / 2) * iw,
                        (cy + h / 2) * ih])
        else:
          boxes.append([np.nan] * 4)
    out.append(common.raw_example(image_path, index + 1, source=label_path, boxes=boxes,
                                  labels=labels, problems=problems))
  names = tuple(class_names) if class_names else tuple(f"class{i}" for i in range(max_id + 1))
  return names, out
