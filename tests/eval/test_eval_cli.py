"""`jaxdet evaluate` through `jaxdet.cli.main`."""

import json
import pytest

from coco_cases import adversarial_case
from jaxdet import cli
from jaxdet.eval import coco_evaluate, voc_evaluate


@pytest.fixture()
def files(tmp_path):
  gt, dets = adversarial_case(11)
  known = {im["id"] for im in gt["images"]}
  dets = [d for d in dets if d["image_id"] in known]
  gt_path, dt_path = tmp_path / "gt.json", tmp_path / "dt.json"
  gt_path.write_text(json.dumps(gt))
  dt_path.write_text(json.dumps(dets))
  return gt, dets, str(gt_path), str(dt_path)


def test_coco_table_and_json(files, tmp_path, capsys):
  gt, dets, gt_path, dt_path = files
  out = tmp_path / "out" / "stats.json"
  assert cli.main(["evaluate", "--gt", gt_path, "--detections", dt_path, "--json", str(out)]) == 0
  printed = capsys.readouterr().out
  expected = coco_evaluate(gt, dets)
  saved = json.loads(out.read_text())
  for key in ("AP", "AP50", "AR100", "ARl"):
    assert saved[key] == pytest.approx(expected[key], abs=1e-15)
    assert key in printed
  assert f"{expected['AP']:.4f}" in printed
  assert saved["per_class"] == pytest.approx(expected["per_class"])
  for name in expected["category_names"]:
    assert name in printed


def test_coco_plots(files, tmp_path):
  _, _, gt_path, dt_path = files
  plots = tmp_path / "plots"
  assert cli.main(["evaluate", "--gt", gt_path, "--detections", dt_path,
                   "--plots", str(plots)]) == 0
  for name in ("pr_curve.png", "f1_curve.png", "confusion_matrix.png",
               "confusion_matrix_normalized.png", "coco_stats.json", "coco_table.txt"):
    assert (plots / name).stat().st_size > 0, name


def test_voc(files, tmp_path, capsys):
  gt, dets, gt_path, dt_path = files
  out = tmp_path / "voc.json"
  assert cli.main(["evaluate", "--gt", gt_path, "--detections", dt_path, "--metric", "voc",
                   "--voc07", "--iou-threshold", "0.3", "--json", str(out)]) == 0
  expected = voc_evaluate(gt, dets, iou_threshold=0.3, use_07_metric=True)
  assert json.loads(out.read_text())["mAP"] == pytest.approx(expected["mAP"], abs=1e-15)
  assert "mAP" in capsys.readouterr().out


def _error(argv, capsys):
  code = cli.main(argv)
  err = capsys.readouterr().err
  assert code != 0
  assert err.startswith("jaxdet evaluate: error:") and "Traceback" not in err
  assert len(err.strip().splitlines()) == 1
  return err


def test_bad_inputs_give_one_line_errors(files, tmp_path, capsys):
  gt, dets, gt_path, dt_path = files
  assert "not found" in _error(["evaluate", "--gt", str(tmp_path / "nope.json"),
                                "--detections", dt_path], capsys)
  broken = tmp_path / "broken.json"
  broken.write_text("[{\"image_id\": 1,")
  assert "not valid JSON" in _error(["evaluate", "--gt", gt_path, "--detections",
                                     str(broken)], capsys)
  unknown = tmp_path / "unknown.json"
  unknown.write_text(json.dumps([dict(dets[0], image_id=987654)]))
  assert "absent from the ground truth" in _error(
      ["evaluate", "--gt", gt_path, "--detections", str(unknown)], capsys)
  nan = tmp_path / "nan.json"
  nan.write_text(json.dumps([dict(dets[0], bbox=[float("nan"), 0, 1, 1])]))
  assert "non-finite" in _error(["evaluate", "--gt", gt_path, "--detections", str(nan)], capsys)
  assert "detections must be" in _error(["evaluate", "--gt", gt_path, "--detections", gt_path],
                                        capsys)
  other = tmp_path / "other_category.json"
  other.write_text(json.dumps(dets + [dict(dets[0], category_id=424242)]))
  assert cli.main(["evaluate", "--gt", gt_path, "--detections", str(other)]) == 0
  known_cats = {c["id"] for c in gt["categories"]}
  dropped = sum(d["category_id"] not in known_cats for d in dets) + 1
  assert f"{dropped} detection(s) of categories absent" in capsys.readouterr().err
  assert "only available" in _error(["evaluate", "--gt", gt_path, "--detections", dt_path,
                                     "--metric", "voc", "--plots", str(tmp_path)], capsys)


def test_mode_arguments_give_one_line_errors(files, tmp_path, capsys):
  """A result file (--gt + --detections) or a workdir (--workdir [--split] [--checkpoint])."""
  _, _, gt_path, dt_path = files
  assert "pass --gt and --detections" in _error(["evaluate", "--gt", gt_path], capsys)
  assert "need --workdir" in _error(["evaluate", "--gt", gt_path, "--detections", dt_path,
                                     "--split", "test"], capsys)
  assert "no such folder" in _error(["evaluate", "--workdir", str(tmp_path / "nope")], capsys)
  assert "cannot be combined" in _error(["evaluate", "--workdir", str(tmp_path), "--gt",
                                         gt_path], capsys)
  assert "no checkpoint found" in _error(["evaluate", "--workdir", str(tmp_path)], capsys)
