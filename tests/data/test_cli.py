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


def test_stats_and_show(tiny_data_dir, tmp_path, capsys):
  rc, out, err = _run(capsys, "stats", "shapes/tiny", "--data-dir", tiny_data_dir, "--split",
                      "validation")
  assert rc == 0, err
  assert "shapes/tiny:validation: 8 images" in out and "circle" in out and "small" in out
  path = str(tmp_path / "grid.png")
  rc, out, err = _run(capsys, "show", "shapes/tiny", "--split", "validation", "--out", path,
                      "--num", "4", "--data-dir", tiny_data_dir)
  assert rc == 0, err
  assert Image.open(path).size == (2 * 258 + 2, 2 * 258 + 2)
  rc, _, err = _run(capsys, "show", "shapes/tiny", "--augmented", "--augment", "full", "--out",
                    path, "--num", "2", "--size", "64", "--data-dir", tiny_data_dir)
  assert rc == 0, err


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
])
def test_errors_are_one_line(argv, needle, capsys, tmp_path):
  rc, _, err = _run(capsys, *[a.format(tmp=tmp_path) for a in argv])
  assert rc == 1
  assert needle in err and "Traceback" not in err


def test_build_tiny(tmp_path, capsys):
  rc, out, err = _run(capsys, "build", "shapes/tiny", "--data-dir", str(tmp_path))
  assert rc == 0, err
  assert "'train': 32" in out and "'validation': 8" in out
