"""COCO evaluation against pycocotools (oracle) and the published conformance cases."""

import json
import pathlib

import numpy as np
import pytest

from jaxdet.eval import coco_evaluate
from jaxdet.eval.coco import STAT_NAMES
from coco_cases import adversarial_case, pycocotools_eval

pytest.importorskip("pycocotools")

CONFORMANCE = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "conformance"

# From CONFORMANCE/README.md (faster_coco_eval's and review_object_detection_metrics' published
# pycocotools numbers).
EXPECTED = {
    "coco_fake100": [0.5045806987249628, 0.6969727247299577, 0.5729816669904824,
                     0.5856257209410443, 0.5193996948036719, 0.5013978986347466,
                     0.38681277964578054, 0.5936795762842003, 0.595352982877607,
                     0.6398109626113442, 0.5664205978994309, 0.5642905982905982],
    "coco_sampled": [0.503647, 0.696973, 0.571667, 0.593252, 0.557991, 0.489363,
                     0.386813, 0.593680, 0.595353, 0.654764, 0.603130, 0.553744],
}
TOLERANCE = {"coco_fake100": 1e-12, "coco_sampled": 5e-7}  # the second is printed to 6 digits


def _stats(result):
  return np.array([result[k] for k in STAT_NAMES])


def _assert_equal_to_pycocotools(gt, dets, **kwargs):
  expected_stats, expected = pycocotools_eval(gt, dets, **kwargs)
  result = coco_evaluate(gt, dets, **kwargs)
  np.testing.assert_allclose(_stats(result), expected_stats, rtol=0, atol=1e-12)
  np.testing.assert_allclose(result["precision"], expected["precision"], rtol=0, atol=1e-12)
  np.testing.assert_allclose(result["recall"], expected["recall"], rtol=0, atol=1e-12)
  assert result["precision"].shape == expected["precision"].shape
  return result


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_conformance_cases(case):
  folder = CONFORMANCE / case
  if not folder.exists():
    pytest.skip(f"conformance data not found at {folder}")
  result = coco_evaluate(str(folder / "gt.json"), str(folder / "dt.json"))
  np.testing.assert_allclose(_stats(result), EXPECTED[case], rtol=0, atol=TOLERANCE[case])
  with open(folder / "gt.json") as f:
    gt = json.load(f)
  with open(folder / "dt.json") as f:
    dets = json.load(f)
  _assert_equal_to_pycocotools(gt, dets)


@pytest.mark.parametrize("chunk", range(4))
def test_adversarial_random_sets_equal_pycocotools(chunk):
  for seed in range(chunk * 40, chunk * 40 + 40):
    gt, dets = adversarial_case(seed)
    try:
      _assert_equal_to_pycocotools(gt, dets)
    except AssertionError as e:
      raise AssertionError(f"seed {seed}: {e}") from None


def test_custom_max_dets_and_area_ranges_equal_pycocotools():
  ranges = ((0, 1e10), (0, 50.0 ** 2), (50.0 ** 2, 80.0 ** 2), (80.0 ** 2, 1e10))
  for seed in range(300, 320):
    gt, dets = adversarial_case(seed)
    _assert_equal_to_pycocotools(gt, dets, max_dets=(1, 3, 20), area_ranges=ranges)


def test_arrays_input_equals_dicts():
  gt, dets = adversarial_case(7)
  known = {im["id"] for im in gt["images"]}
  dets = [d for d in dets if d["image_id"] in known]
  arrays = (np.array([d["image_id"] for d in dets]), np.array([d["bbox"] for d in dets]),
            np.array([d["score"] for d in dets]), np.array([d["category_id"] for d in dets]))
  a = coco_evaluate(gt, arrays)
  b = coco_evaluate(gt, dets)
  np.testing.assert_array_equal(a["precision"], b["precision"])


def test_no_detections_gives_zero_ap():
  gt, _ = adversarial_case(3)
  result = coco_evaluate(gt, [])
  stats = _stats(result)
  assert set(np.unique(stats)) <= {0.0, -1.0}


def test_per_class_is_mean_over_thresholds():
  gt, dets = adversarial_case(11)
  result = coco_evaluate(gt, dets)
  p = result["precision"][:, :, :, 0, -1]
  for k, name in enumerate(result["category_names"]):
    s = p[:, :, k]
    expected = s[s > -1].mean() if (s > -1).any() else -1.0
    assert result["per_class"][name] == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("bad, message", [
    ({"image_id": 12345, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}, "absent"),
    ({"image_id": 1, "category_id": 1, "bbox": [0, float("nan"), 1, 1], "score": 0.5},
     "non-finite"),
    ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": float("nan")},
     "non-finite score"),
    ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 0.5}, "4 numbers"),
    ({"image_id": 1, "category_id": 1, "score": 0.5}, "no 'bbox'"),
])
def test_bad_detections_raise_clear_errors(bad, message):
  gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4],
                         "area": 16, "iscrowd": 0}]}
  with pytest.raises(ValueError, match=message):
    coco_evaluate(gt, [bad])


def test_bad_ground_truth_raises_clear_errors(tmp_path):
  with pytest.raises(ValueError, match="not found"):
    coco_evaluate(str(tmp_path / "missing.json"), [])
  broken = tmp_path / "broken.json"
  broken.write_text("{not json")
  with pytest.raises(ValueError, match="not valid JSON"):
    coco_evaluate(str(broken), [])
  with pytest.raises(ValueError, match="COCO dict"):
    coco_evaluate({"annotations": []}, [])
  gt = {"images": [{"id": 1}], "categories": [{"id": 1}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]},
                        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2]}]}
  with pytest.raises(ValueError, match="unique"):
    coco_evaluate(gt, [])
  gt["annotations"] = [dict(gt["annotations"][0], bbox=[0, 0, -1, 1])]
  with pytest.raises(ValueError, match="negative"):
    coco_evaluate(gt, [])
  gt["annotations"] = [dict(gt["annotations"][0], bbox=[0, 0, 1, 1], area="big")]
  with pytest.raises(ValueError, match="area"):
    coco_evaluate(gt, [])
  gt["annotations"] = [dict(gt["annotations"][0], area=1.0, image_id="x")]
  with pytest.raises(ValueError, match="image_id"):
    coco_evaluate(gt, [])


def test_empty_ground_truth_gives_undefined_stats():
  result = coco_evaluate({"images": [], "categories": [], "annotations": []}, [])
  assert all(result[k] == -1.0 for k in STAT_NAMES)
  assert result["precision"].shape == (10, 101, 0, 4, 3)


def test_result_shapes_and_dtypes():
  import chex
  gt, dets = adversarial_case(11)
  result = coco_evaluate(gt, dets, max_dets=(1, 5, 100))
  k = len(result["category_ids"])
  chex.assert_shape(result["precision"], (10, 101, k, 4, 3))
  chex.assert_shape(result["recall"], (10, k, 4, 3))
  chex.assert_type([result["precision"], result["recall"]], np.float64)
  assert result["category_ids"].dtype == np.int64
  assert all(isinstance(result[name], float) for name in STAT_NAMES)
  assert result["AR1"] <= result["AR10"] + 1e-15 <= result["AR100"] + 2e-15


def test_first_reaching_recall_equals_searchsorted():
  from jaxdet.eval.coco import RECALL_THRESHOLDS, first_reaching
  npig = np.arange(1, 2501)
  got = first_reaching(npig.astype(np.float64))
  for k, n in enumerate(npig):
    rc = np.arange(1, n + 1) / float(n)  # recall after each true positive, as pycocotools
    expected = np.searchsorted(rc, RECALL_THRESHOLDS, side="left") + 1
    np.testing.assert_array_equal(got[:, k], expected, err_msg=f"npig={n}")


def test_benchmark_like_set_equals_pycocotools():
  """Realistic sizes (hundreds of gts per class, 100-detection images) from the benchmark."""
  import importlib.util
  path = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "bench_eval.py"
  spec = importlib.util.spec_from_file_location("bench_eval", path)
  bench = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  gt, dets = bench.synthetic_coco(seed=3, num_images=150, num_classes=6)
  _assert_equal_to_pycocotools(gt, dets)
