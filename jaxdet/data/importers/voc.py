"""Pascal VOC ``Annotations/*.xml`` -> raw examples (keeps ``difficult``).

VOC pixel coordinates are 1-based and inclusive, so ``[xmin - 1, ymin - 1, xmax, ymax]`` are the
pixel edges. Image ids are the file name's digits (``2008_000008`` -> 2008000008) when unique,
else the running index.

Already-split data: when ``ImageSets/Main/{train,val,test}.txt`` (or ``trainval.txt``) sit next to
the ``Annotations`` folder, each listed file goes to that split; an annotation file listed in none
of them is reported and not imported, and so is a listed name without an annotation file.

Masks (``masks=True``): ``SegmentationClass/<stem>.png`` next to ``Annotations``, palette PNGs
whose index is the class id (index k + 1 = class k of the class list, which sorted VOC names
make VOC's own palette order; 0 background, 255 the object boundaries = ignore). The split
lists come from ``ImageSets/Segmentation`` when it exists (else ``ImageSets/Main``), and then
only the images listed there are read; an image without its PNG is reported and not imported."""

import glob
import os
import re
import xml.etree.ElementTree as ET

from jaxdet.data.importers import common

_SPLIT_FILES = (("train", "train"), ("val", "validation"), ("test", "test"))


def _text(node, tag, default=None):
  child = node.find(tag)
  return default if child is None or child.text is None else child.text.strip()


def _image_sets(annotations, masks=False):
  """``(stem -> split, list files)`` from ``ImageSets/Main`` (``ImageSets/Segmentation`` for
  masks, when there is one) next to ``annotations``, or ``(None, [])`` when there is none."""
  sets = os.path.join(os.path.dirname(os.path.normpath(annotations)), "ImageSets")
  main = os.path.join(sets, "Main")
  if masks and os.path.isdir(os.path.join(sets, "Segmentation")):
    main = os.path.join(sets, "Segmentation")
  lists = [(os.path.join(main, f + ".txt"), s) for f, s in _SPLIT_FILES
           if os.path.isfile(os.path.join(main, f + ".txt"))]
  if not any(s in ("train", "validation") for _, s in lists) and os.path.isfile(
      os.path.join(main, "trainval.txt")):
    lists.append((os.path.join(main, "trainval.txt"), "train"))
  if not lists:
    return None, []
  stem_split = {}
  for path, split in lists:
    with open(path) as f:
      for ln, line in enumerate(f, 1):
        parts = line.split()
        if not parts:
          continue
        if stem_split.setdefault(parts[0], split) != split:
          raise common.DataImportError(f"{path}:{ln}: {parts[0]!r} is also listed in the "
                                       f"{stem_split[parts[0]]} split")
  return stem_split, [p for p, _ in lists]


def read(images_dir, annotations, *, class_names=None, masks=False):
  """Reads a folder of VOC XML files.

  Args:
    images_dir: folder holding the images (``<filename>`` is relative to it).
    annotations: the ``Annotations`` folder.
    class_names: optional class list; default: sorted names found in the XML files.
    masks: attach each image's ``SegmentationClass`` PNG (see the module docstring).

  Returns:
    ``(class_names tuple, raw examples list)``; with ``ImageSets/Main`` lists each example has
    its split.
  """
  files = sorted(glob.glob(os.path.join(annotations, "*.xml")))
  if not files:
    raise common.DataImportError(f"{annotations}: no .xml files found")
  stem_split, lists = _image_sets(annotations, masks)
  if masks and lists and os.path.basename(os.path.dirname(lists[0])) == "Segmentation":
    # VOC segments a subset of its images: the others are simply not part of this import.
    files = [f for f in files if os.path.splitext(os.path.basename(f))[0] in stem_split]
  seg_dir = os.path.join(os.path.dirname(os.path.normpath(annotations)), "SegmentationClass")
  if masks and not os.path.isdir(seg_dir):
    raise common.DataImportError(f"--masks: no SegmentationClass folder next to {annotations} "
                                 f"(expected {seg_dir})")
  shown_lists = ", ".join(lists)
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
    split = None
    if stem_split is not None:
      split = stem_split.get(stem)
      if split is None:
        problems.append(f"{xml_path}: not listed in {shown_lists}; not imported")
    mask = None
    if masks:
      mask = os.path.join(seg_dir, stem + ".png")
      if not os.path.isfile(mask) and not problems:
        problems.append(f"{xml_path}: no mask {mask}; not imported")
    digits = re.sub(r"\D", "", stem)
    out.append(common.raw_example(
        os.path.join(images_dir, filename), int(digits[-18:]) if digits else index + 1,
        source=xml_path, boxes=boxes, labels=labels, is_difficult=difficult, problems=problems,
        split=split, mask=mask))
  stems = {os.path.splitext(os.path.basename(f))[0] for f in files}
  for stem, split in (stem_split or {}).items():
    if stem not in stems:
      out.append(common.raw_example(
          os.path.join(images_dir, stem + ".jpg"), len(out) + 1, source=shown_lists, split=split,
          problems=[f"{stem!r} is listed in {shown_lists} but {annotations} has no {stem}.xml"]))
  ids = [ex["image_id"] for ex in out]
  if len(set(ids)) != len(ids):
    for i, ex in enumerate(out):
      ex["image_id"] = i + 1
  names = tuple(class_names) if class_names else tuple(sorted(found))
  return names, out
