"""P/R/F1 at confidence thresholds (oracle: pycocotools' per-image matches) and the confusion
matrix (oracle: an Ultralytics-style per-image loop written here)."""

import contextlib
import copy
import io

import numpy as np
import pytest

from coco_cases import adversarial_case
from jaxdet.eval import coco_evaluate, confusion_matrix, f1_curve, precision_recall_f1

pytest.importorskip("pycocotools")


def _known_images(gt, dets):
  known = {im["id"] for im in gt["images"]}
  return [d for d in dets if d["image_id"] in known]


def reference_counts(gt, dets, confidences, t_index=0):
  """TP / FP / positives per class from pycocotools' evalImgs (area all, maxDet 100)."""
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval
  with contextlib.redirect_stdout(io.StringIO()):
    coco = COCO()
    coco.dataset = copy.deepcopy(gt)
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(copy.deepcopy(dets)), "bbox")
    ev.evaluate()
  cats = sorted(ev.params.catIds)
  tp = np.zeros((len(cats), len(confidences)))
  fp = np.zeros_like(tp)
  npos = np.zeros(len(cats))
  for e in ev.evalImgs:
    if e is None or e["aRng"] != ev.params.areaRng[0]:
      continue
    k = cats.index(e["category_id"])
    npos[k] += np.sum(np.asarray(e["gtIgnore"]) == 0)
    for j, score in enumerate(e["dtScores"]):
      if e["dtIgnore"][t_index, j]:
        continue
      for c, conf in enumerate(confidences):
        if score >= conf:
          if e["dtMatches"][t_index, j]:
            tp[k, c] += 1
          else:
            fp[k, c] += 1
  return tp, fp, npos


@pytest.mark.parametrize("seed", [1, 5, 9, 21])
@pytest.mark.parametrize("iou_threshold, t_index", [(0.5, 0), (0.75, 5)])
def test_f1_curve_matches_pycocotools_matches(seed, iou_threshold, t_index):
  gt, dets = adversarial_case(seed)
  dets = _known_images(gt, dets)
  if not dets:
    pytest.skip("no detections on known images")
  conf = np.array([0.0, 0.1, 0.3, 0.5, 0.9, 0.95])
  tp, fp, npos = reference_counts(gt, dets, conf, t_index)
  curve = f1_curve(coco_evaluate(gt, dets), iou_threshold=iou_threshold, confidences=conf)
  has = npos > 0
  prec = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
  rec = tp / np.maximum(npos, 1)[:, None]
  f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-300), 0.0)
  np.testing.assert_allclose(curve["precision"][has], prec[has], atol=1e-12)
  np.testing.assert_allclose(curve["recall"][has], rec[has], atol=1e-12)
  np.testing.assert_allclose(curve["f1"][has], f1[has], atol=1e-12)
  assert np.isnan(curve["f1"][~has]).all()
  if has.any():
    best = int(np.argmax(f1[has].mean(axis=0)))
    assert curve["best_confidence"] == conf[best]
    assert curve["best_f1"] == pytest.approx(f1[has].mean(axis=0)[best])


def test_precision_recall_f1_single_threshold_equals_curve():
  gt, dets = adversarial_case(4)
  dets = _known_images(gt, dets)
  result = coco_evaluate(gt, dets)
  one = precision_recall_f1(result, confidence=0.5)
  curve = f1_curve(result, confidences=[0.5])
  np.testing.assert_array_equal(one["f1"], curve["f1"][:, 0])
  assert 0.0 <= one["mean_f1"] <= 1.0


def test_bad_iou_threshold_is_a_clear_error():
  gt, dets = adversarial_case(4)
  with pytest.raises(ValueError, match="not one of"):
    f1_curve(coco_evaluate(gt, _known_images(gt, dets)), iou_threshold=0.42)


def reference_confusion(gt, dets, iou_threshold, score_threshold):
  """Ultralytics ConfusionMatrix.process_batch, one image at a time, as plain loops."""
  cats = sorted(c["id"] for c in gt["categories"])
  nc = len(cats)
  known_imgs = {im["id"] for im in gt["images"]}
  matrix = np.zeros((nc + 1, nc + 1), np.int64)
  for img in sorted(known_imgs):
    gts = [a for a in gt["annotations"] if a["image_id"] == img and a["category_id"] in cats
           and not a.get("iscrowd", 0)]
    ds = [d for d in dets if d["image_id"] == img and d["category_id"] in cats
          and d["score"] > score_threshold]
    matches = []
    for gi, g in enumerate(gts):
      for di, d in enumerate(ds):
        gx, gy, gw, gh = g["bbox"]
        dx, dy, dw, dh = d["bbox"]
        w = min(gx + gw, dx + dw) - max(gx, dx)
        h = min(gy + gh, dy + dh) - max(gy, dy)
        inter = w * h if (w > 0 and h > 0) else 0.0
        union = gw * gh + dw * dh - inter
        iou = inter / union if inter > 0 else 0.0
        if iou > iou_threshold:
          matches.append((gi, di, iou))
    # Highest IoU per detection, then per ground truth (stable on ties).
    best_d = {}
    for gi, di, iou in sorted(matches, key=lambda m: -m[2]):
      best_d.setdefault(di, (gi, di, iou))
    best_g = {}
    for gi, di, iou in sorted(best_d.values(), key=lambda m: -m[2]):
      best_g.setdefault(gi, (gi, di, iou))
    matched_d = set()
    for gi, g in enumerate(gts):
      gc = cats.index(g["category_id"])
      if gi in best_g:
        di = best_g[gi][1]
        matched_d.add(di)
        matrix[cats.index(ds[di]["category_id"]), gc] += 1
      else:
        matrix[nc, gc] += 1
    for di, d in enumerate(ds):
      if di not in matched_d:
        matrix[cats.index(d["category_id"]), nc] += 1
  return matrix


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("iou_threshold, score_threshold", [(0.45, 0.25), (0.3, 0.0)])
def test_confusion_matrix_matches_loop_reference(seed, iou_threshold, score_threshold):
  gt, dets = adversarial_case(seed)
  dets = _known_images(gt, dets)
  got = confusion_matrix(gt, dets, iou_threshold=iou_threshold, score_threshold=score_threshold)
  np.testing.assert_array_equal(got, reference_confusion(gt, dets, iou_threshold,
                                                         score_threshold))


def test_confusion_matrix_simple_case():
  gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
                        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 10, 10]}]}
  dets = [{"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.9},  # a as b
          {"image_id": 1, "category_id": 1, "bbox": [90, 90, 5, 5], "score": 0.9}]  # false alarm
  m = confusion_matrix(gt, dets)
  expected = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]])
  np.testing.assert_array_equal(m, expected)
