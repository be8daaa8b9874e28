"""VOC AP against a plain-loop devkit reference and the published VOC test case."""

import pathlib

import numpy as np
import pytest

from jaxdet.eval import voc_evaluate

CONFORMANCE = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "conformance"


def reference_voc(gt, dets, *, iou_threshold, use_07_metric, plus_one):
  """The VOC devkit (voc_eval.py) as plain loops, one class at a time."""
  one = 1.0 if plus_one else 0.0
  out = {}
  for cat in gt["categories"]:
    c = cat["id"]
    recs = {}
    for a in gt["annotations"]:
      if a["category_id"] == c:
        diff = bool(a.get("difficult", 0)) or bool(a.get("iscrowd", 0))
        recs.setdefault(a["image_id"], []).append((a["bbox"], diff))
    npos = sum(not d for objs in recs.values() for _, d in objs)
    taken = {img: [False] * len(objs) for img, objs in recs.items()}
    mine = [d for d in dets if d["category_id"] == c]
    mine = sorted(mine, key=lambda d: -d["score"])  # stable, like a mergesort
    tp, fp = [], []
    for d in mine:
      bx, by, bw, bh = d["bbox"]
      best, jbest = -np.inf, -1
      for j, (g, _) in enumerate(recs.get(d["image_id"], [])):
        gx, gy, gw, gh = g
        iw = max(min(bx + bw, gx + gw) - max(bx, gx) + one, 0.0)
        ih = max(min(by + bh, gy + gh) - max(by, gy) + one, 0.0)
        inter = iw * ih
        union = (bw + one) * (bh + one) + (gw + one) * (gh + one) - inter
        iou = inter / union if union > 0 else 0.0
        if iou > best:
          best, jbest = iou, j
      if jbest >= 0 and best > iou_threshold:
        if recs[d["image_id"]][jbest][1]:
          tp.append(0), fp.append(0)
        elif not taken[d["image_id"]][jbest]:
          taken[d["image_id"]][jbest] = True
          tp.append(1), fp.append(0)
        else:
          tp.append(0), fp.append(1)
      else:
        tp.append(0), fp.append(1)
    if npos == 0:
      out[cat["name"]] = -1.0
      continue
    tpc, fpc = np.cumsum(tp, dtype=float), np.cumsum(fp, dtype=float)
    rec = tpc / npos
    prec = tpc / np.maximum(tpc + fpc, np.finfo(np.float64).eps)
    if use_07_metric:
      ap = 0.0
      for t in np.arange(0.0, 1.1, 0.1):
        p = np.max(prec[rec >= t]) if np.sum(rec >= t) > 0 else 0.0
        ap += p / 11.0
    else:
      mrec = np.concatenate(([0.0], rec, [1.0]))
      mpre = np.concatenate(([0.0], prec, [0.0]))
      for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
      i = np.where(mrec[1:] != mrec[:-1])[0]
      ap = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    out[cat["name"]] = float(ap)
  return out


def random_voc_case(seed):
  rng = np.random.default_rng(seed)
  num_images, num_classes = int(rng.integers(1, 6)), int(rng.integers(1, 4))
  anns, dets = [], []
  for img in range(num_images):
    for _ in range(int(rng.integers(0, 6))):
      x, y, w, h = (float(v) for v in rng.integers(0, 10, 4) * 4)
      anns.append({"id": len(anns) + 1, "image_id": img, "iscrowd": 0,
                   "category_id": int(rng.integers(1, num_classes + 1)),
                   "bbox": [x, y, w + 4, h + 4], "difficult": int(rng.random() < 0.2)})
    for _ in range(int(rng.integers(0, 10))):
      if anns and rng.random() < 0.6:
        a = anns[int(rng.integers(len(anns)))]
        b = [v + float(rng.integers(-4, 5)) for v in a["bbox"][:2]] + a["bbox"][2:]
        dets.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": b,
                     "score": float(rng.choice([0.3, 0.6, 0.9]))})
      else:
        x, y, w, h = (float(v) for v in rng.integers(0, 10, 4) * 4)
        dets.append({"image_id": img, "category_id": int(rng.integers(1, num_classes + 1)),
                     "bbox": [x, y, w + 1, h + 1], "score": float(rng.random())})
  gt = {"images": [{"id": i} for i in range(num_images)], "annotations": anns,
        "categories": [{"id": c, "name": f"c{c}"} for c in range(1, num_classes + 1)]}
  return gt, dets


@pytest.mark.parametrize("use_07_metric", [False, True])
@pytest.mark.parametrize("plus_one", [False, True])
@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_matches_plain_loop_reference(use_07_metric, plus_one, iou_threshold):
  for seed in range(25):
    gt, dets = random_voc_case(seed)
    kw = dict(iou_threshold=iou_threshold, use_07_metric=use_07_metric, plus_one=plus_one)
    expected = reference_voc(gt, dets, **kw)
    result = voc_evaluate(gt, dets, **kw)
    for name, ap in expected.items():
      assert result["per_class"][name] == pytest.approx(ap, abs=1e-12), (seed, name)
    valid = [v for v in expected.values() if v >= 0]
    assert result["mAP"] == pytest.approx(np.mean(valid) if valid else -1.0, abs=1e-12)


def _voc_case1():
  root = CONFORMANCE / "voc_case1"
  if not root.exists():
    pytest.skip(f"conformance data not found at {root}")
  images, anns, dets = [], [], []
  for i, path in enumerate(sorted((root / "gts").glob("*.txt"))):
    images.append({"id": i, "file_name": path.name})
    for line in path.read_text().splitlines():
      if line.strip():
        _, x, y, w, h = line.split()
        anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "iscrowd": 0,
                     "bbox": [float(x), float(y), float(w), float(h)]})
    for line in (root / "dets" / path.name).read_text().splitlines():
      if line.strip():
        _, s, x, y, w, h = line.split()
        dets.append({"image_id": i, "category_id": 1, "score": float(s),
                     "bbox": [float(x), float(y), float(w), float(h)]})
  assert (len(anns), len(dets)) == (15, 24)
  return {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "object"}]}, dets


# shared/conformance/README.md (rafaelpadilla/review_object_detection_metrics), "+1" boxes.
PUBLISHED = {
    (True, 0.1): 0.3333333333, (True, 0.3): 0.2683982683, (True, 0.5): 0.0303030303,
    (True, 0.75): 0.0,
    (False, 0.1): 0.3371980676, (False, 0.3): 0.2456866804, (False, 0.5): 0.0222222222,
    (False, 0.75): 0.0,
}


@pytest.mark.parametrize("use_07_metric, iou_threshold", sorted(PUBLISHED))
def test_published_voc_case(use_07_metric, iou_threshold):
  gt, dets = _voc_case1()
  result = voc_evaluate(gt, dets, iou_threshold=iou_threshold, use_07_metric=use_07_metric,
                        plus_one=True)
  assert result["mAP"] == pytest.approx(PUBLISHED[use_07_metric, iou_threshold], abs=1e-9)


@pytest.mark.parametrize("iou_threshold, expected", [(0.1, 0.2801), (0.3, 0.2254)])
def test_published_voc_case_without_plus_one(iou_threshold, expected):
  gt, dets = _voc_case1()
  result = voc_evaluate(gt, dets, iou_threshold=iou_threshold)
  assert result["mAP"] == pytest.approx(expected, abs=5e-5)
  for m07 in (False, True):
    kw = dict(iou_threshold=iou_threshold, use_07_metric=m07, plus_one=False)
    assert voc_evaluate(gt, dets, **kw)["mAP"] == pytest.approx(
        reference_voc(gt, dets, **kw)["object"], abs=1e-12)


def test_difficult_detections_are_neither_tp_nor_fp():
  gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "difficult": 1},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10]}]}
  dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
          {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.8}]
  result = voc_evaluate(gt, dets)
  assert result["num_positives"]["a"] == 1
  assert result["per_class"]["a"] == pytest.approx(1.0)


@pytest.mark.parametrize("gt", [
    {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}]},
    {"images": [], "categories": [], "annotations": []},
])
def test_no_ground_truth_gives_undefined_map(gt):
  dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}]
  result = voc_evaluate(gt, dets if gt["images"] else [])
  assert result["mAP"] == -1.0
