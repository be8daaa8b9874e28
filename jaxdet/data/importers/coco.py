"""COCO json (``images``, ``annotations`` with ``bbox`` [x, y, w, h] and ``iscrowd``,
``categories``) -> raw examples. Category names come from ``categories`` (sorted by id) unless
``class_names`` is given."""

import json
import os

from jaxdet.data.importers import common


def read(images_dir, annotations, *, class_names=None):
  """Reads a COCO annotation file.

  Args:
    images_dir: folder holding the images (``file_name`` is relative to it).
    annotations: path of the COCO json file.
    class_names: optional class list (order = label ids); others are unknown classes.

  Returns:
    ``(class_names tuple, raw examples list)``.

  Raises:
    common.DataImportError: unreadable or malformed json.
  """
  try:
    with open(annotations) as f:
      data = json.load(f)
    images = data["images"]
    anns = data.get("annotations", [])
    categories = {int(c["id"]): str(c["name"]) for c in data.get("categories", [])}
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise common.DataImportError(f"{annotations}: not a readable COCO json file: {e}") from e
  names = tuple(class_names) if class_names else tuple(categories[k] for k in sorted(categories))
  per_image = {}
  for a in anns:
    per_image.setdefault(a.get("image_id"), []).append(a)
  out = []
  for im in images:
    path = os.path.join(images_dir, im.get("file_name", ""))
    boxes, labels, crowd, problems = [], [], [], []
    for a in per_image.get(im.get("id"), []):
      try:
        x, y, w, h = (float(v) for v in a["bbox"])
        labels.append(categories.get(int(a["category_id"]), f"<category id {a['category_id']}>"))
      except (KeyError, TypeError, ValueError) as e:
        problems.append(f"{annotations}: annotation {a.get('id')} of {path}: malformed ({e})")
        continue
      boxes.append([x, y, x + w, y + h])
      crowd.append(bool(a.get("iscrowd", 0)))
    out.append(common.raw_example(path, im.get("id", len(out)), source=f"{annotations} ({path})",
                                  boxes=boxes, labels=labels, is_crowd=crowd, problems=problems))
  return names, out
