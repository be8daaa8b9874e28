"""Seeded adversarial COCO ground truth / detection sets and a pycocotools runner (the oracle)."""

import contextlib
import copy
import io

import numpy as np


def adversarial_case(seed: int):
  """A small COCO set built to hit every corner of COCOeval.

  Crowd regions, an ``area`` field that disagrees with the box (also exactly on the range
  boundaries), annotation id 0 and negative ids, a gt ``ignore`` field (pycocotools overrides it),
  annotations of unknown images/categories, images without gt or detections, categories on one
  side only, > 100 detections in a group, tied scores, boxes on a coarse grid (IoU ties and IoUs
  exactly at thresholds), zero-size, tiny and huge boxes.
  """
  rng = np.random.default_rng(seed)
  num_images = int(rng.integers(1, 9))
  image_ids = rng.choice(np.arange(-3, 60), num_images, replace=False)
  images = [{"id": int(i)} for i in rng.permutation(image_ids)]
  cat_pool = rng.choice(np.arange(0, 30), int(rng.integers(2, 9)), replace=False)
  known = cat_pool[: max(1, len(cat_pool) - 2)]  # the last ones are "unknown" categories
  categories = [{"id": int(c), "name": f"c{c}"} for c in rng.permutation(known)]
  grid = float(rng.choice([1.0, 2.0, 5.0, 10.0]))

  def box():
    kind = rng.random()
    if kind < 0.05:
      return [float(rng.integers(0, 20)) * grid, 3.0 * grid, 0.0, float(rng.integers(0, 5))]
    if kind < 0.15:
      return [float(v) for v in rng.uniform(0, 50, 2)] + [float(v) for v in rng.uniform(0.1, 8, 2)]
    if kind < 0.2:
      return [0.0, 0.0] + [float(v) for v in rng.uniform(200, 600, 2)]
    x, y = rng.integers(0, 12, 2) * grid
    w, h = rng.integers(1, 14, 2) * grid
    return [float(x), float(y), float(w), float(h)]

  anns = []
  used_ids = set()
  for _ in range(int(rng.integers(0, 40))):
    img = int(rng.choice(image_ids)) if rng.random() < 0.95 else 999
    cat = int(rng.choice(cat_pool))
    b = box()
    area_kind = rng.random()
    if area_kind < 0.6:
      area = b[2] * b[3]
    elif area_kind < 0.8:
      area = float(rng.choice([32.0 ** 2, 96.0 ** 2, 0.0, 1e10]))
    else:
      area = b[2] * b[3] * float(rng.uniform(0.2, 3.0))
    ann_id = int(rng.integers(-5, 500))
    while ann_id in used_ids:
      ann_id = int(rng.integers(-5, 500))
    used_ids.add(ann_id)
    ann = {"id": ann_id, "image_id": img, "category_id": cat, "bbox": b, "area": area,
           "iscrowd": int(rng.random() < 0.15)}
    if rng.random() < 0.2:
      ann["ignore"] = int(rng.integers(0, 2))
    anns.append(ann)
  # Near-duplicates of ground truth (IoU ties between gts).
  for a in list(anns[: int(rng.integers(0, 4))]):
    dup = dict(a, id=max(used_ids) + 1)
    used_ids.add(dup["id"])
    anns.append(dup)

  dets = []
  score_pool = np.array([0.1, 0.5, 0.5, 0.9, 0.25])
  # Mirror pairs: two gts equally far left and right of a detection (an exact IoU tie that
  # pycocotools breaks towards the later gt), then a detection on one of them.
  for _ in range(int(rng.integers(0, 3))):
    img, cat = int(rng.choice(image_ids)), int(rng.choice(known))
    x, y, w, h = (float(v) * grid for v in rng.integers(2, 10, 4))
    for dx in rng.permutation([-grid, grid]):
      new_id = max(used_ids | {0}) + 1 if rng.random() < 0.8 else 0
      if new_id in used_ids:
        new_id = max(used_ids) + 1
      used_ids.add(new_id)
      anns.append({"id": new_id, "image_id": img, "category_id": cat,
                   "bbox": [x + float(dx), y, w, h], "area": w * h, "iscrowd": 0})
    dets.append({"image_id": img, "category_id": cat, "bbox": [x, y, w, h], "score": 0.95})
    side = float(rng.choice([-grid, grid]))
    dets.append({"image_id": img, "category_id": cat, "bbox": [x + side, y, w, h],
                 "score": 0.94})
  for _ in range(int(rng.integers(1, 60))):
    if anns and rng.random() < 0.6:
      a = anns[int(rng.integers(len(anns)))]
      img, cat = a["image_id"], a["category_id"]
      if img == 999:
        img = int(rng.choice(image_ids))
      b = list(a["bbox"])
      if rng.random() < 0.5:
        b = [b[0] + float(rng.integers(-2, 3)) * grid, b[1] + float(rng.integers(-2, 3)) * grid,
             max(b[2] + float(rng.integers(-2, 3)) * grid, 0.0), b[3]]
    else:
      img, cat, b = int(rng.choice(image_ids)), int(rng.choice(cat_pool)), box()
    if rng.random() < 0.03:  # a degenerate prediction: pycocotools keeps it
      b = [b[0], b[1], -b[2] - 1.0, b[3]]
    score = float(rng.choice(score_pool)) if rng.random() < 0.6 else float(rng.random())
    dets.append({"image_id": img, "category_id": cat, "bbox": b, "score": score})
  if rng.random() < 0.3:  # one crowded group, more than 100 detections
    img, cat = int(rng.choice(image_ids)), int(rng.choice(known))
    for _ in range(int(rng.integers(101, 140))):
      dets.append({"image_id": img, "category_id": cat, "bbox": box(),
                   "score": float(rng.choice(score_pool))})
  order = rng.permutation(len(dets))
  dets = [dets[i] for i in order]
  gt = {"images": images, "annotations": anns, "categories": categories}
  return gt, dets


def pycocotools_eval(gt: dict, dets: list, *, max_dets=None, area_ranges=None):
  """Runs pycocotools COCOeval (bbox) on deep copies; returns (stats [12], eval dict)."""
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval
  with contextlib.redirect_stdout(io.StringIO()):
    coco = COCO()
    coco.dataset = copy.deepcopy(gt)
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(copy.deepcopy(dets)), "bbox")
    if max_dets is not None:
      ev.params.maxDets = list(max_dets)
    if area_ranges is not None:
      ev.params.areaRng = [list(r) for r in area_ranges]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  return np.asarray(ev.stats), ev.eval
