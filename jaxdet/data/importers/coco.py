"""COCO json (``images``, ``annotations`` with ``bbox`` [x, y, w, h] and ``iscrowd``,
``categories``) -> raw examples. Category names come from ``categories`` (sorted by id) unless
``class_names`` is given.

Already-split data: ``annotations`` may be a folder of per-split json files named after their
split (``instances_train2017.json``, ``instances_val2017.json``; or ``train.json``, ``val.json``),
or of split sub-folders holding one json each (``train/_annotations.coco.json``, ``valid/...``).
A split's images are looked up in the matching sub-folder of ``images_dir`` (``train2017``),
in the json's own folder, then in ``images_dir``.

Masks (``masks=True``): each image's instance ``segmentation`` (polygons, or RLE, compressed or
not) is rasterized with pycocotools into one semantic mask: 0 background, class k -> k + 1, in
annotation order; a pixel covered by two or more instances is 255 (ignore), as torchvision's
segmentation reference (``ConvertCocoPolysToMask``) does; ``iscrowd`` regions are 255 (ignore),
as COCO's evaluation ignores crowds; an annotation without ``segmentation`` ignores its box. An
RLE whose ``size`` is not the image's is reported as a mask of another size.
"""

import glob
import json
import os

import numpy as np

from jaxdet.data.importers import common


def _load(path):
  try:
    with open(path) as f:
      data = json.load(f)
    images = data["images"]
    anns = data.get("annotations", [])
    categories = {int(c["id"]): str(c["name"]) for c in data.get("categories", [])}
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise common.DataImportError(f"{path}: not a readable COCO json file: {e}") from e
  return images, anns, categories


def _split_files(annotations):
  """``[(json path, split or None)]`` for a json file or a folder of per-split json files."""
  if not os.path.isdir(annotations):
    return [(annotations, None)]
  files = sorted(glob.glob(os.path.join(annotations, "*.json")))
  if not files:  # split sub-folders, one json each (Roboflow-style exports)
    files = [f for d in sorted(glob.glob(os.path.join(annotations, "*", "")))
             if common.split_of(os.path.basename(os.path.dirname(d)))
             for f in sorted(glob.glob(os.path.join(d, "*.json")))]
  if not files:
    raise common.DataImportError(f"{annotations}: no COCO .json files found (in it or in "
                                 f"train/val/test sub-folders)")
  if len(files) == 1 and common.split_of(os.path.basename(files[0])) is None:
    return [(files[0], None)]  # one unsplit file (e.g. CVAT's instances_default.json)
  by_split = {}
  for f in files:
    split = common.split_of(os.path.splitext(os.path.relpath(f, annotations))[0])
    if split is None:
      raise common.DataImportError(f"{f}: cannot tell which split this json file is (name it "
                                   f"after train, val or test), or pass one json file")
    by_split.setdefault(split, []).append(f)
  out = []
  for split, group in by_split.items():
    if len(group) > 1:  # COCO's own folder also holds captions_* and person_keypoints_* files
      group = [f for f in group if os.path.basename(f).startswith("instances")] or group
    if len(group) > 1:
      raise common.DataImportError(f"{annotations}: several json files for the {split} split: "
                                   f"{[os.path.relpath(f, annotations) for f in group]}; pass "
                                   f"one json file")
    out.append((group[0], split))
  return out


def _image_dirs(images_dir, json_path, split):
  """Folders to look for a split's images in, most specific first."""
  if split is None:
    return [images_dir]
  subs = [d for d in sorted(glob.glob(os.path.join(images_dir, "*", "")))
          if common.split_of(os.path.basename(os.path.dirname(d))) == split]
  return [os.path.dirname(d) for d in subs] + [os.path.dirname(json_path), images_dir]


def _pycocotools_mask():
  try:
    from pycocotools import mask as mask_utils  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise common.DataImportError("--masks with --format coco rasterizes polygons with "
                                 "pycocotools: pip install pycocotools") from e
  return mask_utils


def _instance_mask(mask_utils, ann, h, w):
  """One annotation's ``[h, w]`` bool mask (None: no segmentation)."""
  segm = ann.get("segmentation")
  if not segm:
    return None
  if isinstance(segm, list):  # polygons [[x0, y0, x1, y1, ...], ...]
    polys = [p for p in segm if len(p) >= 6]
    if not polys:
      return np.zeros((h, w), bool)
    rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
  else:
    size = [int(v) for v in segm.get("size", (h, w))]
    if size != [h, w]:
      raise ValueError(f"annotation {ann.get('id')}: RLE mask of size {size[1]}x{size[0]} "
                       f"(w x h) but its image is {w}x{h}")
    rle = mask_utils.frPyObjects(segm, h, w) if isinstance(segm.get("counts"), list) else segm
  return mask_utils.decode(rle).astype(bool)


def semantic_mask_fn(anns, categories):
  """The raw example's ``mask`` callable: ``(h, w, class_to_id) -> (uint8 [h, w], 0)``
  rasterizing ``anns`` (COCO annotation dicts of one image; ``categories``: id -> name) as the
  module docstring says."""
  def rasterize(h, w, class_to_id):
    mask_utils = _pycocotools_mask()
    out = np.zeros((h, w), np.uint8)
    count = np.zeros((h, w), np.int32)
    ignore = np.zeros((h, w), bool)
    for a in anns:
      name = categories.get(int(a.get("category_id", -1)))
      m = _instance_mask(mask_utils, a, h, w)
      if m is None:  # box only: its pixels are unknown
        x, y, bw, bh = (float(v) for v in a["bbox"])
        ignore[max(int(y), 0):int(np.ceil(y + bh)), max(int(x), 0):int(np.ceil(x + bw))] = True
      elif a.get("iscrowd", 0) or name not in class_to_id:
        ignore |= m
      else:
        out[m] = class_to_id[name] + 1
        count += m
    out[(count > 1) | ignore] = 255
    return out, 0
  return rasterize


def read(images_dir, annotations, *, class_names=None, masks=False):
  """Reads COCO annotations: one json file, or a folder of per-split json files.

  Args:
    images_dir: folder holding the images (``file_name`` is relative to it), or their split
      sub-folders.
    annotations: path of the COCO json file, or a folder of per-split json files.
    class_names: optional class list (order = label ids); others are unknown classes.
    masks: attach a rasterizer of each image's instance masks (see the module docstring).

  Returns:
    ``(class_names tuple, raw examples list)``; already-split data sets each example's split.

  Raises:
    common.DataImportError: unreadable or malformed json, or inconsistent split files.
  """
  if masks:
    _pycocotools_mask()  # fail now, not once per image
  categories, out, files = {}, [], _split_files(annotations)
  for json_path, split in files:
    images, anns, cats = _load(json_path)
    for k, v in cats.items():
      if categories.setdefault(k, v) != v:
        raise common.DataImportError(f"{json_path}: category id {k} is {v!r} here but "
                                     f"{categories[k]!r} in another split's json file")
    image_ids = {im.get("id") for im in images}
    per_image = {}
    for a in anns:
      per_image.setdefault(a.get("image_id"), []).append(a)
    dirs = _image_dirs(images_dir, json_path, split)
    for im in images:
      name = im.get("file_name", "")
      path = next((p for d in dirs for p in [os.path.join(d, name)] if os.path.isfile(p)),
                  os.path.join(dirs[0], name))
      boxes, labels, crowd, problems = [], [], [], []
      for a in per_image.get(im.get("id"), []):
        try:
          x, y, w, h = (float(v) for v in a["bbox"])
          labels.append(cats.get(int(a["category_id"]), f"<category id {a['category_id']}>"))
        except (KeyError, TypeError, ValueError) as e:
          problems.append(f"{json_path}: annotation {a.get('id')} of {path}: malformed ({e})")
          continue
        boxes.append([x, y, x + w, y + h])
        crowd.append(bool(a.get("iscrowd", 0)))
      source = f"{json_path} (image id {im.get('id')}: {name})"  # not `path`: said twice
      mask = semantic_mask_fn(per_image.get(im.get("id"), []), cats) if masks else None
      out.append(common.raw_example(path, im.get("id", len(out)), source=source, boxes=boxes,
                                    labels=labels, is_crowd=crowd, problems=problems, split=split,
                                    mask=mask))
    for image_id in sorted((k for k in per_image if k not in image_ids), key=str):
      ids = [a.get("id") for a in per_image[image_id]]
      out.append(common.raw_example(
          f"<image id {image_id}>", -1, source=json_path, split=split,
          problems=[f"{json_path}: annotation(s) {ids} refer to image id {image_id!r}, which is "
                    f"not in 'images'"]))
  if len(files) > 1 and len({ex["image_id"] for ex in out}) != len(out):
    # Per-split files often restart their ids at 0: ids only need to be unique per dataset.
    for i, ex in enumerate(out):
      ex["image_id"] = i + 1
  names = tuple(class_names) if class_names else tuple(categories[k] for k in sorted(categories))
  return names, out
