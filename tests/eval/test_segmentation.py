"""Segmentation metrics against a plain NumPy reference written with loops; report and plots."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from jaxdet.eval import segmentation as seg


def _reference(preds, targets, k, ignore=255):
  """Loops over every pixel: the confusion matrix and the four scores, as the FCN paper."""
  cm = np.zeros((k, k), np.int64)
  for p_img, t_img in zip(preds, targets):
    for p, t in zip(np.ravel(p_img), np.ravel(t_img)):
      if t == ignore or not 0 <= t < k:
        continue
      cm[t, p] += 1
  total = sum(cm[i, j] for i in range(k) for j in range(k))
  iou, acc = [], []
  for i in range(k):
    t_i = sum(cm[i, j] for j in range(k))
    p_i = sum(cm[j, i] for j in range(k))
    union = t_i + p_i - cm[i, i]
    iou.append(cm[i, i] / union if union else math.nan)
    acc.append(cm[i, i] / t_i if t_i else math.nan)
  present_iou = [v for v in iou if not math.isnan(v)]
  present_acc = [v for v in acc if not math.isnan(v)]
  fw = sum(sum(cm[i]) * iou[i] for i in range(k) if sum(cm[i])) / total if total else math.nan
  return cm, {
      "pixel_accuracy": sum(cm[i, i] for i in range(k)) / total if total else math.nan,
      "mean_accuracy": sum(present_acc) / len(present_acc) if present_acc else math.nan,
      "mean_iou": sum(present_iou) / len(present_iou) if present_iou else math.nan,
      "fw_iou": fw, "iou": iou, "acc": acc}


def _seeded(seed, n=3, h=9, w=11, k=5, ignore_frac=0.1, absent=()):
  rng = np.random.default_rng(seed)
  target = rng.integers(0, k, (n, h, w))
  pred = np.where(rng.uniform(size=target.shape) < 0.6, target, rng.integers(0, k, target.shape))
  for c in absent:  # a class in neither targets nor predictions
    target[target == c] = 0
    pred[pred == c] = 0
  target[rng.uniform(size=target.shape) < ignore_frac] = 255
  return pred, target


def _assert_same(metrics, ref, names):
  for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou"):
    np.testing.assert_allclose(metrics[key], ref[key], rtol=1e-12, err_msg=key)
  np.testing.assert_allclose(list(metrics["per_class_iou"].values()), ref["iou"], rtol=1e-12)
  np.testing.assert_allclose(list(metrics["per_class_accuracy"].values()), ref["acc"], rtol=1e-12)
  assert list(metrics["per_class_iou"]) == list(names)


@pytest.mark.parametrize("seed,absent", [(0, ()), (1, (3,)), (2, (1, 4))])
def test_metrics_equal_loop_reference_accumulated_in_one_pass(seed, absent):
  k = 5
  batches = [_seeded(seed * 10 + b, absent=absent) for b in range(3)]
  cm = seg.accumulate_confusion(batches, num_classes=k)
  ref_cm, ref = _reference([p for pr, _ in batches for p in pr],
                           [t for _, tg in batches for t in tg], k)
  assert cm.dtype == np.int64 and cm.shape == (k, k)
  np.testing.assert_array_equal(cm, ref_cm)
  names = seg.default_class_names(k)
  metrics = seg.segmentation_metrics(cm)
  _assert_same(metrics, ref, names)
  for c in absent:
    assert math.isnan(metrics["per_class_iou"][names[c]])
  assert metrics["confusion"] == ref_cm.tolist()
  # One pass over batches equals one call on everything.
  preds = np.concatenate([p for p, _ in batches])
  targets = np.concatenate([t for _, t in batches])
  np.testing.assert_array_equal(seg.confusion_matrix(preds, targets, num_classes=k), cm)


def test_ignore_and_out_of_range_targets_are_skipped():
  pred = np.array([[[0, 1, 2, 1]]])
  target = np.array([[[0, 255, 7, 1]]])  # 255 ignored, 7 outside [0, 3)
  cm = seg.confusion_matrix(pred, target, num_classes=3)
  np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 0], [0, 0, 0]])
  # A predicted-only class has IoU 0 (counted), a class in neither is NaN (not counted).
  m = seg.segmentation_metrics(seg.confusion_matrix(np.array([[0, 2]]), np.array([[0, 0]]),
                                                    num_classes=3), ["bg", "a", "b"])
  assert m["per_class_iou"]["b"] == 0.0 and math.isnan(m["per_class_iou"]["a"])
  assert m["mean_iou"] == pytest.approx(0.25) and m["pixel_accuracy"] == 0.5
  # Padding rows of an eval batch (example_mask False) are skipped.
  cm2 = seg.accumulate_confusion(
      [{"pred": np.zeros((2, 1, 2), int), "mask": np.ones((2, 1, 2), int),
        "example_mask": np.array([True, False])}], num_classes=2)
  np.testing.assert_array_equal(cm2, [[0, 0], [2, 0]])


def test_empty_and_bad_inputs():
  m = seg.segmentation_metrics(np.zeros((3, 3), np.int64))
  assert all(math.isnan(m[k]) for k in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou"))
  with pytest.raises(ValueError, match="same shape"):
    seg.confusion_matrix(np.zeros((1, 2, 2), int), np.zeros((1, 2, 3), int), num_classes=2)
  with pytest.raises(ValueError, match="class id 5 outside"):
    seg.confusion_matrix(np.full((1, 2), 5), np.zeros((1, 2), int), num_classes=2)
  with pytest.raises(ValueError, match="integer"):
    seg.confusion_matrix(np.zeros((1, 2)), np.zeros((1, 2), int), num_classes=2)
  with pytest.raises(ValueError, match="2 names"):
    seg.segmentation_metrics(np.zeros((3, 3)), ["a", "b"])


def test_report_json_table_and_plots(tmp_path):
  pred, target = _seeded(7, n=2, h=16, w=20, k=4, absent=(2,))
  cm = seg.confusion_matrix(pred, target, num_classes=4)
  names = ["background", "cat", "dog", "고양이"]
  images = np.random.default_rng(0).integers(0, 255, (2, 16, 20, 3), dtype=np.uint8)
  metrics = seg.write_segmentation_report(cm, str(tmp_path), class_names=names, images=images,
                                          pred_masks=pred, target_masks=target)
  saved = json.loads((tmp_path / seg.METRICS_FILE).read_text())
  assert saved["per_class_iou"]["dog"] is None  # NaN -> null: valid JSON
  assert saved["mean_iou"] == pytest.approx(metrics["mean_iou"])
  table = (tmp_path / "segmentation_table.txt").read_text()
  assert table.strip() == seg.report_segmentation(metrics).strip()
  assert "mean IoU" in table and "고양이" in table and "nan" in table
  for name in ("confusion_matrix.png", "masks.png"):
    with Image.open(tmp_path / name) as im:
      assert im.format == "PNG" and min(im.size) > 150


def test_evaluate_predictions_batches_same_size_images():
  rng = np.random.default_rng(3)
  examples = [{"image": rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
               "mask": rng.integers(0, 3, (h, w))} for h, w in [(5, 6), (5, 6), (7, 4), (5, 6)]]
  calls = []

  def predict(images):  # predicts class 1 everywhere
    calls.append(images.shape)
    return {"masks": np.ones(images.shape[:3], np.int32)}

  cm, kept = seg.evaluate_predictions(predict, examples, num_classes=3, batch_size=2, keep=3)
  assert calls == [(2, 5, 6, 3), (1, 7, 4, 3), (1, 5, 6, 3)]
  expected = seg.confusion_matrix(np.concatenate([np.ones(e["mask"].size, int) for e in examples]),
                                  np.concatenate([e["mask"].ravel() for e in examples]),
                                  num_classes=3)
  np.testing.assert_array_equal(cm, expected)
  assert len(kept) == 3 and kept[2][0].shape == (7, 4, 3)
  with pytest.raises(ValueError, match="input resolution"):
    seg.evaluate_predictions(lambda im: np.zeros((1, 2, 2), int), examples[:1], num_classes=3)
