"""`jaxdet predict`: inputs (files, folders, globs, EXIF, unreadable files, URLs, a workdir as
--model) and outputs (unique names, --conf, COCO results, YOLO txt). Issue 10."""

import json

import numpy as np
import pytest
from PIL import Image

import export_testlib as tl
from jaxdet import cli


def _run(capsys, *argv):
  rc = cli.main([str(a) for a in argv])
  out, err = capsys.readouterr()
  return rc, out, err


def _save(path, seed, hw=(60, 90)):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(tl.shapes_images(1, *hw, seed=seed)[0]).save(path, quality=95)
  return path


def _records(out_dir):
  return json.loads((out_dir / "detections.json").read_text(encoding="utf-8"))


def test_colliding_stems_from_folders_and_globs_get_unique_outputs(model_path, tmp_path, capsys):
  root = tmp_path / "in"
  files = [_save(root / "a" / "x.jpg", 1), _save(root / "b" / "x.jpg", 2),
           _save(root / "a" / "x.png", 3)]
  (root / "a" / "notes.txt").write_text("not an image, not picked from the folder")
  out_dir = tmp_path / "out"
  rc, out, err = _run(capsys, "predict", "--model", model_path, root / "a", f"{root}/b/*.jpg",
                      "--out", out_dir, "--conf", "0")
  assert rc == 0, err
  records = _records(out_dir)
  assert sorted(r["path"] for r in records) == sorted(str(f) for f in files)
  drawings = [r["drawing"] for r in records]
  assert len(set(drawings)) == 3 and all((out_dir / d).is_file() for d in drawings)
  assert sorted(r["image"] for r in records) == ["a/x.jpg", "a/x.png", "b/x.jpg"]
  assert sorted(r["image_id"] for r in records) == [1, 2, 3]
  for record in records:  # each drawing is of its own input
    source = np.asarray(Image.open(record["path"]).convert("RGB"))
    assert np.asarray(Image.open(out_dir / record["drawing"])).shape == source.shape


def test_unreadable_files_are_skipped_or_fail(model_path, tmp_path, capsys):
  good = _save(tmp_path / "good.png", 4)
  broken = tmp_path / "broken.jpg"
  broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
  rc, out, err = _run(capsys, "predict", "--model", model_path, good, broken, tmp_path / "gone.png",
                      "--out", tmp_path / "o1")
  assert rc == 0, err
  assert "skipped" in err and "broken.jpg" in err and "gone.png" in err and "1 image(s)" in out
  assert f"skipped: cannot read image {broken}" in err  # (was "skipped cannot read image")
  assert [r["image"] for r in _records(tmp_path / "o1")] == ["good.png"]
  rc, _, err = _run(capsys, "predict", "--model", model_path, good, broken, "--out",
                    tmp_path / "o2", "--on-error", "fail")
  assert rc == 1 and "broken.jpg" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["image", "model"])
def test_urls_are_refused(model_path, tmp_path, capsys, where):
  url = "https://example.com/cat.jpg"
  argv = (["--model", model_path, url] if where == "image" else
          ["--model", "https://example.com/m.onnx", _save(tmp_path / "a.png", 5)])
  rc, _, err = _run(capsys, "predict", *argv, "--out", tmp_path / "o")
  assert rc == 1 and "URLs are not supported" in err and len(err.strip().splitlines()) == 1


def test_exif_orientation_is_applied(model_path, tmp_path, capsys):
  exif = Image.Exif()
  exif[0x0112] = 6  # stored 60x90, displayed 90x60
  Image.fromarray(tl.shapes_images(1, 60, 90, seed=6)[0]).save(tmp_path / "p.jpg", exif=exif)
  rc, _, err = _run(capsys, "predict", "--model", model_path, tmp_path / "p.jpg", "--out",
                    tmp_path / "o")
  assert rc == 0, err
  (record,) = _records(tmp_path / "o")
  assert (record["height"], record["width"]) == (90, 60)


def test_conf_filters_drawings_and_every_output(model_path, tmp_path, capsys):
  files = [_save(tmp_path / f"{i}.png", 10 + i) for i in range(3)]

  def predict(conf):
    out_dir = tmp_path / f"c{conf}"
    rc, _, err = _run(capsys, "predict", "--model", model_path, *files, "--out", out_dir,
                      "--conf", conf, "--format", "yolo")
    assert rc == 0, err
    return out_dir

  low_dir = predict("0")
  low = [d["score"] for r in _records(low_dir) for d in r["detections"]]
  # A cut inside the scores (the calibrated fixture's scores need not reach a fixed 0.3).
  cut = float(np.quantile(low, 0.75))
  high_dir = predict(repr(cut))
  high = [d["score"] for r in _records(high_dir) for d in r["detections"]]
  assert min(high) >= cut and len(high) == sum(s >= cut for s in low) < len(low)
  lines = [line for f in sorted((high_dir / "labels").glob("*.txt"))
           for line in f.read_text().splitlines()]
  assert len(lines) == len(high)
  values = np.array([[float(v) for v in line.split()] for line in lines])
  assert np.all(values[:, 1:5] >= 0) and np.all(values[:, 1:5] <= 1)
  assert np.all(values[:, 5] >= cut - 1e-5)  # (scores written with 5 decimals)
  # The drawings differ: fewer boxes above the cut.
  a, b = (np.asarray(Image.open(d / "0.png")) for d in (low_dir, high_dir))
  assert not np.array_equal(a, b)


def test_default_threshold_is_025(model_path, tmp_path, capsys):
  rc, _, _ = _run(capsys, "predict", "--model", model_path, _save(tmp_path / "a.png", 20),
                  "--out", tmp_path / "o")
  assert rc == 0
  assert all(d["score"] >= 0.25 for r in _records(tmp_path / "o") for d in r["detections"])


def test_coco_results_are_read_by_jaxdet_evaluate(model_path, tmp_path, capsys):
  files = [_save(tmp_path / "img" / f"{name}.png", 30 + i) for i, name in enumerate("abc")]
  gt = {"images": [{"id": 100 + i, "file_name": f.name, "width": 90, "height": 60}
                   for i, f in enumerate(files)],
        "categories": [{"id": 7 + i, "name": n} for i, n in enumerate(tl.CLASS_NAMES)],
        "annotations": [{"id": 1, "image_id": 100, "category_id": 8, "bbox": [10, 10, 30, 30],
                         "area": 900, "iscrowd": 0}]}
  (tmp_path / "gt.json").write_text(json.dumps(gt))
  out_dir = tmp_path / "o"
  rc, _, err = _run(capsys, "predict", "--model", model_path, tmp_path / "img", "--out", out_dir,
                    "--format", "coco", "--coco-gt", tmp_path / "gt.json", "--conf", "0")
  assert rc == 0, err
  results = json.loads((out_dir / "coco_results.json").read_text())
  assert results and {r["image_id"] for r in results} <= {100, 101, 102}
  assert {r["category_id"] for r in results} <= {7, 8, 9}
  n = sum(len(r["detections"]) for r in _records(out_dir))
  assert len(results) == n
  rc, out, err = _run(capsys, "evaluate", "--gt", tmp_path / "gt.json", "--detections",
                      out_dir / "coco_results.json")
  assert rc == 0, err
  assert "AP" in out
  # Without --coco-gt: image ids 1.. in input order, category ids = class ids.
  rc, _, err = _run(capsys, "predict", "--model", model_path, tmp_path / "img", "--out",
                    tmp_path / "o2", "--format", "coco", "--conf", "0")
  assert rc == 0, err
  plain = json.loads((tmp_path / "o2" / "coco_results.json").read_text())
  assert {r["image_id"] for r in plain} <= {1, 2, 3} and {r["category_id"] for r in plain} <= {
      0, 1, 2}


def test_workdir_as_model_predicts_like_its_onnx_export(workdir, model_path, tmp_path, capsys):
  files = [_save(tmp_path / "a.png", 40), _save(tmp_path / "b.png", 41, hw=(64, 64))]
  got = {}
  for name, model in (("jax", workdir), ("onnx", model_path)):
    rc, _, err = _run(capsys, "predict", "--model", model, *files, "--out", tmp_path / name,
                      "--conf", "0")
    assert rc == 0, err
    got[name] = _records(tmp_path / name)
    if name == "jax":
      assert "is a workdir" in err and "jaxdet export" in err
  for jax_record, onnx_record in zip(got["jax"], got["onnx"]):
    a = {(d["class_id"], round(d["score"], 3)) for d in jax_record["detections"]}
    b = {(d["class_id"], round(d["score"], 3)) for d in onnx_record["detections"]}
    assert len(a ^ b) <= 2  # rounding at a 3-decimal edge at most
