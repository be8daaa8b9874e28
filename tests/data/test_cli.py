"""`jaxdet data ...` in-process: results, and one-line errors without tracebacks."""

import json

import numpy as np
import pytest
from PIL import Image

from jaxdet import cli


def _run(capsys, *argv):
  rc = cli.main(["data", *argv])
  out = capsys.readouterr()
  return rc, out.out, out.err


def test_stats_and_show(tiny_data_dir, tmp_path, capsys, monkeypatch):
  from jaxdet.data import draw
  overlays = []  # shapes has masks: `show` draws them as an overlay
  real_overlay = draw.overlay_mask
  monkeypatch.setattr(draw, "overlay_mask", lambda im, m: overlays.append(m.shape) or
                      real_overlay(im, m))
  rc, out, err = _run(capsys, "stats", "shapes/tiny", "--data-dir", tiny_data_dir, "--split",
                      "validation")
  assert rc == 0, err
  assert "shapes/tiny:validation: 8 images" in out and "circle" in out and "small" in out
  assert "mask pixels per class" in out and "background" in out  # shapes has masks
  path = str(tmp_path / "grid.png")
  rc, out, err = _run(capsys, "show", "shapes/tiny", "--split", "validation", "--out", path,
                      "--num", "4", "--data-dir", tiny_data_dir)
  assert rc == 0, err
  assert Image.open(path).size == (2 * 258 + 2, 2 * 258 + 2)
  assert overlays == [(256, 256)] * 4
  rc, _, err = _run(capsys, "show", "shapes/tiny", "--augmented", "--augment", "full", "--out",
                    path, "--num", "2", "--size", "64", "--data-dir", tiny_data_dir)
  assert rc == 0, err
  assert overlays[4:] == [(64, 64)] * 2


def test_import_and_errors(tmp_path, capsys):
  images = tmp_path / "images"
  images.mkdir()
  Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(images / "a.png")
  (images / "b.png").write_bytes(b"garbage")
  ann = tmp_path / "ann.json"
  ann.write_text(json.dumps({
      "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
      "categories": [{"id": 1, "name": "thing"}]}))
  common = ["import", "--format", "coco", "--images", str(images), "--annotations", str(ann),
            "--data-dir", str(tmp_path / "tfds")]
  rc, out, err = _run(capsys, *common, "--name", "ok_ds")
  assert rc == 0, err
  assert "skipped 1" in out and "b.png" in err
  rc, out, err = _run(capsys, *common, "--name", "fail_ds", "--on-error", "fail")
  assert rc == 1 and "b.png" in err and "Traceback" not in err
  assert len(err.strip().splitlines()) == 1
  rc, _, err = _run(capsys, "stats", "ok_ds", "--data-dir", str(tmp_path / "tfds"))
  assert rc == 0, err


@pytest.mark.parametrize("argv,needle", [
    (["stats", "no_such_ds_123"], "not found"),
    (["build", "mnist"], "only the embedded"),
    (["import", "--format", "voc", "--images", "{tmp}/missing", "--annotations", "{tmp}/missing",
      "--name", "x", "--data-dir", "{tmp}/tfds"], "no .xml files"),
    (["import", "--format", "yolo", "--images", "{tmp}", "--annotations", "{tmp}", "--name", "x",
      "--data-dir", "{tmp}/tfds", "--masks"], "--masks works with --format voc or coco"),
])
def test_errors_are_one_line(argv, needle, capsys, tmp_path):
  rc, _, err = _run(capsys, *[a.format(tmp=tmp_path) for a in argv])
  assert rc == 1
  assert needle in err and "Traceback" not in err


def test_build_tiny(tmp_path, capsys):
  rc, out, err = _run(capsys, "build", "shapes/tiny", "--data-dir", str(tmp_path))
  assert rc == 0, err
  assert "'train': 32" in out and "'validation': 8" in out


def _tiny_coco(tmp_path):
  images = tmp_path / "images"
  images.mkdir()
  Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(images / "a.png")
  ann = tmp_path / "ann.json"
  ann.write_text(json.dumps({
      "images": [{"id": 1, "file_name": "a.png"}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [20, 1, 15, 5]}],
      "categories": [{"id": 1, "name": "thing"}]}))
  return ["import", "--format", "coco", "--images", str(images), "--annotations", str(ann),
          "--data-dir", str(tmp_path / "tfds")]


def test_import_overwrite_and_ratios(tmp_path, capsys):
  argv = _tiny_coco(tmp_path)
  rc, out, err = _run(capsys, *argv, "--name", "again")
  assert rc == 0, err
  assert "clipped 1 box" in out  # [20, 35] x [1, 6] in a 30 px wide image
  rc, out, err = _run(capsys, *argv, "--name", "again")
  assert rc == 1 and len(err.strip().splitlines()) == 1
  assert "already exists" in err and "pass --overwrite to replace it" in err
  rc, out, err = _run(capsys, *argv, "--name", "again", "--overwrite")
  assert rc == 0, err
  rc, out, err = _run(capsys, *argv, "--name", "ratios", "--split-ratios", "0.8,0.3")
  assert rc == 1 and "sum to 1" in err and "0.8,0.3" in err
  assert not (tmp_path / "tfds" / "ratios").exists()


def test_misspelled_dataset_lists_local_ones(tmp_path, capsys):
  argv = _tiny_coco(tmp_path)
  assert _run(capsys, *argv, "--name", "my_photos")[0] == 0
  rc, _, err = _run(capsys, "stats", "my_fotos", "--data-dir", str(tmp_path / "tfds"))
  assert rc == 1 and "Did you mean 'my_photos'?" in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_import_logs_are_quiet(tmp_path):
  # A fresh process: TensorFlow's import-time notices depend on the environment set before it.
  import os
  import subprocess
  import sys
  env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
  env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  proc = subprocess.run([sys.executable, "-m", "jaxdet", "data", *_tiny_coco(tmp_path), "--name",
                         "quiet"], capture_output=True, text=True, env=env, timeout=300,
                        check=False)
  assert proc.returncode == 0, proc.stderr
  logs = proc.stdout + proc.stderr
  for noise in ("oneDNN", "cpu_feature_guard", "Downloading and preparing", "Unknown size",
                "OpenCV", "absl::InitializeLog"):
    assert noise not in logs, logs
  assert logs.strip().splitlines() == [l for l in logs.strip().splitlines() if "imported" in l]


def test_format_stats_aligns_wide_class_names():
  """Per-class counts line up for CJK names (2 terminal columns per character)."""
  from jaxdet.data.cli import format_stats
  from jaxdet.eval.report import display_width
  gt = {"images": [{"id": 1, "height": 10, "width": 10}],
        "annotations": [{"image_id": 1, "category_id": c, "area": 4., "iscrowd": 0,
                         "difficult": 0} for c in (0, 1)]}
  lines = format_stats("t", gt, ["고양이", "coffee cup"]).splitlines()
  rows = [line for line in lines if line.rstrip().endswith(" 1")]
  assert len(rows) == 2 and len({display_width(r) for r in rows}) == 1, rows
