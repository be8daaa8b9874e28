"""Pascal VOC ``Annotations/*.xml`` -> raw examples (keeps ``difficult``).

VOC pixel coordinates are 1-based and inclusive, so ``[xmin - 1, ymin - 1, xmax, ymax]`` are the
pixel edges. Image ids are the file name's digits (``2008_000008`` -> 2008000008) when unique,
else the running index."""

import glob
import os
import re
import xml.etree.ElementTree as ET

from jaxdet.data.importers import common


def _text(node, tag, default=None):
  child = node.find(tag)
  return default if child is None or child.text is None else child.text.strip()


def read(images_dir, annotations, *, class_names=None):
  """Reads a folder of VOC XML files.

  Args:
    images_dir: folder holding the images (``<filename>`` is relative to it).
    annotations: the ``Annotations`` folder.
    class_names: optional class list; default: sorted names found in the XML files.

  Returns:
    ``(class_names tuple, raw examples list)``.
  """
  files = sorted(glob.glob(os.path.join(annotations, "*.xml")))
  if not files:
    raise common.DataImportError(f"{annotations}: no .xml files found")
  out, found = [], set()
  for index, xml_path in enumerate(files):
    stem = os.path.splitext(os.path.basename(xml_path))[0]
    boxes, labels, difficult, problems = [], [], [], []
    filename = stem + ".jpg"
    try:
      root = ET.parse(xml_path).getroot()
      filename = _text(root, "filename", filename)
      for obj in root.iter("object"):
        name = _text(obj, "name", "")
        bb = obj.find("bndbox")
        coords = [float(_text(bb, k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        boxes.append([coords[0] - 1, coords[1] - 1, coords[2], coords[3]])
        labels.append(name)
        difficult.append(_text(obj, "difficult", "0") == "1")
        found.add(name)
    except (ET.ParseError, TypeError, ValueError, AttributeError) as e:
      problems.append(f"{xml_path}: malformed VOC annotation ({type(e).__name__}: {e})")
    digits = re.sub(r"\D", "", stem)
    out.append(common.raw_example(
        os.path.join(images_dir, filename), int(digits[-18:]) if digits else index + 1,
        source=xml_path, boxes=boxes, labels=labels, is_difficult=difficult, problems=problems))
  ids = [ex["image_id"] for ex in out]
  if len(set(ids)) != len(ids):
    for i, ex in enumerate(out):
      ex["image_id"] = i + 1
  names = tuple(class_names) if class_names else tuple(sorted(found))
  return names, out
