"""`jaxdet export` and `jaxdet predict` end to end, on a real (random-init) workdir."""

import json

import numpy as np
import pytest
from PIL import Image

import jaxdet_export
import export_testlib as tl
from jaxdet import cli, testing


def _run(capsys, *argv):
  rc = cli.main(list(argv))
  out, err = capsys.readouterr()
  return rc, out, err


def test_export_writes_a_served_model(model_path, workdir):
  import jaxdet
  served = jaxdet_export.Detector(model_path)
  loaded = jaxdet.load(workdir)
  assert served.class_names == loaded.class_names and served.image_size == loaded.image_size
  assert served.metadata.score_threshold == pytest.approx(loaded.postprocess["score_threshold"])


def test_predict_draws_image_files(model_path, tmp_path, capsys):
  images = tl.shapes_images(2, 80, 120, seed=9)
  files = [tmp_path / "a.png", tmp_path / "b.png"]
  for image, file in zip(images, files):
    Image.fromarray(image).save(file)
  out_dir = tmp_path / "pred"
  rc, out, err = _run(capsys, "predict", "--model", str(model_path), *map(str, files), "--out",
                      str(out_dir), "--conf", "0")
  assert rc == 0, err
  assert "2 image(s)" in out
  for name in ("a.png", "b.png", "predictions.png"):
    assert (out_dir / name).is_file()
  drawn = np.asarray(Image.open(out_dir / "a.png"))
  assert drawn.shape == images[0].shape and np.any(drawn != images[0])  # boxes were drawn
  records = json.loads((out_dir / "detections.json").read_text())
  want = jaxdet_export.Detector(model_path).predict(images)
  for i, record in enumerate(records):
    n = int(want["num_detections"][i])
    assert len(record["detections"]) == n >= 1
    np.testing.assert_allclose([d["box_xyxy"] for d in record["detections"]], want["boxes"][i, :n],
                               atol=0.01)
    assert [d["class_name"] for d in record["detections"]] == [
        tl.CLASS_NAMES[c] for c in want["classes"][i, :n]]


@pytest.mark.slow
def test_predict_on_a_tfds_split_matches_jaxdet_predict(model_path, workdir, tmp_path, capsys,
                                                         tiny_data_dir):
  """Validation images of `shapes/tiny` (256 px, letterboxed to 64): ONNX == jaxdet.load."""
  import jaxdet
  from jaxdet.data import sources
  from jaxdet.data import tfds_maps
  data_dir = tiny_data_dir
  out_dir = tmp_path / "pred"
  rc, _, err = _run(capsys, "predict", "--model", str(model_path), "--dataset", "shapes/tiny",
                    "--split", "validation", "--num-images", "5", "--data-dir", data_dir,
                    "--out", str(out_dir), "--batch-size", "3", "--conf", "0")
  assert rc == 0, err
  assert len(list(out_dir.glob("validation_*.png"))) == 5 and (out_dir / "predictions.png").is_file()
  records = json.loads((out_dir / "detections.json").read_text())
  source, _ = sources.open_split("shapes/tiny", "validation", data_dir)
  images = np.stack([sources.record_to_example(tfds_maps.to_jaxdet_record(source[i], i))["image"]
                     for i in range(5)])
  want = jaxdet.load(workdir).predict(images)
  assert want["num_detections"].sum() >= 5
  got = {"boxes": np.zeros_like(want["boxes"]), "scores": np.zeros_like(want["scores"]),
         "classes": np.zeros_like(want["classes"]),
         "num_detections": np.array([len(r["detections"]) for r in records])}
  for i, record in enumerate(records):
    for j, d in enumerate(record["detections"]):
      got["boxes"][i, j], got["scores"][i, j], got["classes"][i, j] = (
          d["box_xyxy"], d["score"], d["class_id"])
  tl.assert_same_detections(got, want, box_atol=0.5 + 0.01)  # json rounds boxes to 0.01 px


@pytest.mark.parametrize("flags", [["--no-nms"], ["--fp16", "--dynamic-image-size", "--opset",
                                                  "18", "--max-detections", "5"]])
def test_export_variants(workdir, tmp_path, capsys, flags):
  path = tmp_path / "variant.onnx"
  rc, out, err = _run(capsys, "export", "--workdir", str(workdir), "--output", str(path), *flags)
  assert rc == 0, err
  served = jaxdet_export.Detector(path)
  result = served.predict(tl.shapes_images(1, 50, 70, seed=1))
  if "--no-nms" in flags:
    assert "no NMS" in out and set(result) == {"boxes", "scores"}
    rc, _, err = _run(capsys, "predict", "--model", str(path), str(path), "--out", str(tmp_path))
    assert rc == 1 and "--no-nms" in err
  else:
    assert served.metadata.fp16 and result["boxes"].shape == (1, 5, 4)


def test_cli_errors_are_one_line(workdir, model_path, tmp_path, capsys):
  cases = [
      ("export", "--workdir", str(tmp_path / "nope"), "--output", str(tmp_path / "m.onnx")),
      ("export", "--workdir", str(tmp_path), "--output", str(tmp_path / "m.onnx")),
      ("export", "--workdir", str(workdir), "--output", str(tmp_path / "m.onnx"), "--opset", "9"),
      ("predict", "--model", str(tmp_path / "nope.onnx"), "x.png", "--out", str(tmp_path)),
      ("predict", "--model", str(model_path), "--out", str(tmp_path)),
      ("predict", "--model", str(model_path), str(tmp_path / "missing.png"), "--out",
       str(tmp_path), "--on-error", "fail"),
  ]
  broken = tmp_path / "broken.png"
  broken.write_bytes(b"not a png")
  cases.append(("predict", "--model", str(model_path), str(broken), "--out", str(tmp_path),
                "--on-error", "fail"))
  for argv in cases:
    rc, _, err = _run(capsys, *argv)
    assert rc == 1, argv
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"jaxdet {argv[0]}: error: "), err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["export", "predict"])
def test_a_converted_classifier_is_refused_in_one_line(tmp_path, capsys, command):
  """Issue 28: `jaxdet convert torchvision --arch resnet50` gives a backbone folder, which these
  commands used to reject as "unknown model 'classifier'" (as if the folder were broken)."""
  folder = testing.write_classifier_folder(tmp_path / "r18")
  out = tmp_path / "out"
  image = tmp_path / "a.png"
  Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(image)
  argv = {"export": ("export", "--workdir", str(folder), "--output", str(out)),
          "predict": ("predict", "--model", str(folder), str(image), "--out", str(out))}[command]
  rc, _, err = _run(capsys, *argv)
  assert rc == 1  # as every other error of export and predict (test_cli_errors_are_one_line)
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"jaxdet {command}: error: {folder} holds an "
                                                 f"image classifier (resnet18)"), err
  assert "classification inference is not supported yet" in err
  assert not out.exists()  # a failing command writes nothing


def test_argument_ranges_are_checked(workdir, tmp_path, capsys):
  with pytest.raises(SystemExit) as exc:
    cli.main(["export", "--workdir", str(workdir), "--output", str(tmp_path / "m.onnx"),
              "--score-threshold", "1.5"])
  assert exc.value.code == 2 and "[0, 1]" in capsys.readouterr().err


def test_export_says_and_records_which_checkpoint(workdir, model_path, tmp_path, capsys):
  """Issue 10: `jaxdet export` names the exported step; the ONNX metadata records it."""
  meta = jaxdet_export.Detector(model_path).metadata
  assert (meta.checkpoint_step, meta.checkpoint_kind) == (1, "best")
  path = tmp_path / "step1.onnx"
  rc, out, err = _run(capsys, "export", "--workdir", str(workdir), "--output", str(path),
                      "--checkpoint", "1")
  assert rc == 0, err
  assert "exporting checkpoint step 1 (best" in out  # (the fixture meta has no val AP)
  assert jaxdet_export.Detector(path).metadata.checkpoint_step == 1
  for which, message in (("7", r"no checkpoint of step 7 .*steps kept: 1$"),
                         ("latest", "no latest checkpoint under"), ("newest", "'best', 'latest' or")):
    rc, _, err = _run(capsys, "export", "--workdir", str(workdir), "--output", str(path),
                      "--checkpoint", which)
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err), err


def test_latest_checkpoint_reports_the_ap_of_its_own_step(tmp_path):
  """A latest checkpoint's metadata carries the evaluation before it (the final save precedes
  the final evaluation): `export --checkpoint latest` printed step 20's AP for step 40."""
  from jaxdet_export import cli as export_cli
  run = tmp_path / "run"
  (run / "checkpoints" / "latest" / "40").mkdir(parents=True)
  records = [{"step": 20, "split": "eval", "AP": 0.25}, {"step": 40, "split": "train", "loss": 1.},
             {"step": 40, "split": "eval", "AP": 0.125}]
  (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
  assert export_cli.val_ap(run, run / "checkpoints" / "latest" / "40") == 0.125
  (run / "metrics.jsonl").write_text(json.dumps(records[0]) + "\n")
  assert export_cli.val_ap(run, run / "checkpoints" / "latest" / "40") is None
