"""write_report / format_table: files written, numbers consistent with coco_evaluate."""

import json
import warnings

import pytest
from PIL import Image

from coco_cases import adversarial_case
from jaxdet.eval import coco_evaluate, format_table, write_report
from jaxdet.eval.coco import STAT_NAMES


def _case():
  gt, dets = adversarial_case(21)
  known = {im["id"] for im in gt["images"]}
  return gt, [d for d in dets if d["image_id"] in known]


def test_write_report_files_and_stats(tmp_path):
  gt, dets = _case()
  stats = write_report(gt, dets, str(tmp_path / "eval"))
  expected = coco_evaluate(gt, dets)
  for k in STAT_NAMES:
    assert stats[k] == expected[k]
  saved = json.loads((tmp_path / "eval" / "coco_stats.json").read_text())
  assert saved["AP"] == expected["AP"]
  assert 0.0 <= saved["best_confidence"] <= 1.0
  for name in ("pr_curve.png", "f1_curve.png", "confusion_matrix.png",
               "confusion_matrix_normalized.png"):
    with Image.open(tmp_path / "eval" / name) as im:
      assert im.format == "PNG" and min(im.size) > 300
  table = (tmp_path / "eval" / "coco_table.txt").read_text()
  assert table.strip() == format_table(expected).strip()


def test_format_table_lists_stats_then_classes():
  gt, dets = _case()
  result = coco_evaluate(gt, dets)
  names = [f"name{k}" for k in range(len(result["category_ids"]))]
  lines = format_table(result, names).splitlines()
  assert [l.split()[0] for l in lines[1:13]] == list(STAT_NAMES)
  assert float(lines[1].split()[-1]) == pytest.approx(result["AP"], abs=5e-5)
  body = lines[15:]
  assert [l.split()[1] for l in body] == names
  for line, ap in zip(body, result["per_class"].values()):
    assert float(line.split()[2]) == pytest.approx(ap, abs=5e-5)


def test_class_names_length_is_checked():
  gt, dets = _case()
  with pytest.raises(ValueError, match="names for"):
    format_table(coco_evaluate(gt, dets), ["only-one"] * 99)


@pytest.mark.parametrize("gt", [
    {"images": [], "categories": [], "annotations": []},
    {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],
     "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}]},
])
def test_write_report_without_detections(gt, tmp_path, recwarn):
  stats = write_report(gt, [], str(tmp_path))
  assert stats["AP"] == (0.0 if gt["annotations"] else -1.0)
  assert (tmp_path / "pr_curve.png").exists()
  assert not [w for w in recwarn if "legend" in str(w.message)]


def test_class_without_ground_truth_warns_nothing(tmp_path):
  """A class with no validation boxes (precision -1 everywhere) must not emit NumPy's
  "Mean of empty slice" RuntimeWarning anywhere in the report."""
  gt = {"images": [{"id": 1, "width": 50, "height": 50}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "never seen"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5],
                         "area": 25, "iscrowd": 0}]}
  dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9},
          {"image_id": 1, "category_id": 2, "bbox": [10, 10, 5, 5], "score": 0.8}]
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    stats = write_report(gt, dets, str(tmp_path))
  assert stats["per_class"]["never seen"] == -1.0 and stats["AP"] == pytest.approx(1.0)


def test_cjk_class_names_render_without_glyph_warnings(tmp_path):
  """Class names such as '고양이' are drawn with a CJK fallback font (matplotlib's DejaVu Sans
  alone warned 'Glyph ... missing from font(s)' for each plot)."""
  gt = {"images": [{"id": 1, "width": 50, "height": 50}],
        "categories": [{"id": 1, "name": "고양이"}, {"id": 2, "name": "coffee cup"}],
        "annotations": [{"id": k, "image_id": 1, "category_id": k, "bbox": [10 * k, 0, 5, 5],
                         "area": 25, "iscrowd": 0} for k in (1, 2)]}
  dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 0, 5, 5], "score": 0.9},
          {"image_id": 1, "category_id": 2, "bbox": [30, 30, 5, 5], "score": 0.8}]
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    write_report(gt, dets, str(tmp_path))
  assert (tmp_path / "confusion_matrix.png").exists()


def test_format_table_aligns_wide_class_names():
  """CJK characters take two terminal columns: the AP column lines up under '고양이' too."""
  from jaxdet.eval.report import display_width
  gt, dets = _case()
  result = coco_evaluate(gt, dets)
  names = ["고양이", "coffee cup"] + [f"c{k}" for k in range(len(result["category_ids"]) - 2)]
  lines = format_table(result, names).splitlines()
  rows = [line for line in lines if "고양이" in line or "coffee cup" in line]
  assert len(rows) == 2 and len({display_width(r) for r in rows}) == 1, rows  # numbers line up
