"""`jaxdet convert darknet`: the .weights format, bad input, and parity with OpenCV DNN.

Parity: random weights in darknet format for each standard cfg (classes reduced to 3, input
reduced), read by `cv2.dnn.readNetFromDarknet` and converted by jaxdet; `jaxdet.load(DIR).forward`
must give OpenCV's boxes and objectness x class scores before NMS. The tiny cfgs run in the fast
suite; the full YOLOv3, YOLOv3-SPP and YOLOv4 (15-25 s of XLA compile each on a 2-core CPU) are
marked slow.
"""

import pathlib

import jax
import numpy as np
import pytest

import jaxdet
from jaxdet import cli, testing
from jaxdet.convert import darknet
from jaxdet.models import darknet_cfg as dc
from tests import testing_torch

# The project's reference copy of the darknet cfgs (sits beside the repository).
SHARED = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "darknet"
C = 3


def _cfg(name, size, num_classes=C):
  """(cfg text, plan) of a built-in cfg at `size` px with `num_classes` classes."""
  sections = dc.set_num_classes(dc.parse_cfg(dc.builtin_text(name)), num_classes)
  text = dc.to_text(sections, image_size=size)
  return text, dc.plan_text(text)


def _write(tmp_path, name, size, seed=0):
  text, plan = _cfg(name, size)
  cfg, weights = tmp_path / f"{name}.cfg", tmp_path / f"{name}.weights"
  cfg.write_text(text)
  weights.write_bytes(testing.random_darknet_weights(np.random.default_rng(seed), plan))
  return cfg, weights


def test_builtin_cfgs_are_the_shared_reference_files():
  if not SHARED.is_dir():
    pytest.skip(f"{SHARED} is absent (the project's reference cfgs): nothing to compare with")
  for name in dc.builtin_names():
    assert dc.builtin_text(name) == (SHARED / f"{name}.cfg").read_text(), name


# Sizes of the official COCO .weights files (pjreddie / AlexeyAB releases).
@pytest.mark.parametrize("name,nbytes", [("yolov3", 248007048), ("yolov3-tiny", 35434956),
                                         ("yolov4", 257717640), ("yolov4-tiny", 24251276)])
def test_weights_size_of_the_standard_cfgs(name, nbytes):
  assert darknet.expected_bytes(dc.plan_text(dc.builtin_text(name))) == nbytes


def test_plan_follows_darknet_shape_rules():
  p = dc.plan_text(dc.builtin_text("yolov4-tiny"))
  assert [p.shapes[i][:2] for i in p.yolo_indices] == [(13, 13), (26, 26)]
  assert p.shapes[3] == (104, 104, 32)  # route groups=2 group_id=1 of 64 channels
  assert [p.layers[i].mask for i in p.yolo_indices] == [(3, 4, 5), (1, 2, 3)]
  assert p.layers[p.yolo_indices[0]].scale_x_y == 1.05
  spp = dc.plan_text(dc.builtin_text("yolov3-spp"))
  pools = [(l, s) for l, s in zip(spp.layers, spp.shapes) if isinstance(l, dc.MaxPool)]
  assert [(l.size, l.pad_before, l.pad_after, s[0]) for l, s in pools] == [
      (5, 2, 2, 19), (9, 4, 4, 19), (13, 6, 6, 19)]  # stride-1 SPP pools keep 19 x 19
  tiny = dc.plan_text(dc.builtin_text("yolov3-tiny"))
  pool = tiny.layers[11]  # size 2 stride 1 on 13 x 13: padded bottom/right only
  assert (pool.size, pool.stride, pool.pad_before, pool.pad_after) == (2, 1, 0, 1)
  assert tiny.shapes[11] == (13, 13, 512)


@pytest.mark.parametrize("header", [(0, 2, 5, 32013312), (0, 1, 0, 12345)])
def test_weights_round_trip(header):
  _, plan = _cfg("yolov4-tiny", 64)
  data = testing.random_darknet_weights(np.random.default_rng(1), plan, header=header)
  variables, got = darknet.weights_to_variables(plan, data)
  assert (got.major, got.minor, got.revision, got.seen) == header  # int32 `seen` before 0.2
  assert darknet.variables_to_weights(plan, variables, got) == data


def test_bad_input_is_one_error_and_no_output_folder(tmp_path, capsys):
  cfg, weights = _write(tmp_path, "yolov3-tiny", 64)
  out = tmp_path / "out"
  run = lambda c=cfg, w=weights, *extra: cli.main(
      ["convert", "darknet", "--cfg", str(c), "--weights", str(w), "--output", str(out), *extra])

  weights.write_bytes(weights.read_bytes()[:-8])
  assert run() == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "bytes but the cfg needs" in err, err
  assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
      "yolov3-tiny.cfg", "yolov3-tiny.weights"]

  bad = tmp_path / "bad.cfg"
  bad.write_text(cfg.read_text().replace("[upsample]", "[crop]"))
  assert run(bad) == 1
  err = capsys.readouterr().err
  assert "unsupported darknet section [crop] at line" in err and not out.exists(), err

  bad.write_text(cfg.read_text().replace("filters=24", "filters=255", 1))
  assert run(bad) == 1
  err = capsys.readouterr().err
  assert "filters=24" in err and "[yolo]" in err and "255 channels" in err, err

  assert run(cfg, weights, "--image-size", "100") == 1
  assert "multiple of 32" in capsys.readouterr().err and not out.exists()


def test_swapped_or_text_files_are_one_error(tmp_path, capsys):
  """Issue 28: `--cfg` and `--weights` swapped ended in a UnicodeDecodeError traceback; a cfg given
  as `--weights` was reported only as a byte count mismatch."""
  cfg, weights = _write(tmp_path, "yolov3-tiny", 64)
  out = tmp_path / "out"

  def run(c, w):
    rc = cli.main(["convert", "darknet", "--cfg", str(c), "--weights", str(w), "--output",
                   str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists()
    return err

  err = run(weights, cfg)
  assert f"--cfg {weights} is not a text file" in err and "swapped?" in err, err
  err = run(cfg, cfg)
  assert f"--weights {cfg} is a text file (a darknet cfg)" in err and "swapped?" in err, err
  notes = tmp_path / "notes.weights"
  notes.write_text("download the weights from the release page\n")
  err = run(cfg, notes)
  assert f"--weights {notes} is a text file, not a darknet .weights file" in err, err
  latin1 = tmp_path / "latin1.cfg"  # no NUL byte, but not UTF-8 either
  latin1.write_bytes(cfg.read_bytes().replace(b"[net]", b"# caf\xe9\n[net]", 1))
  err = run(latin1, weights)
  assert f"--cfg {latin1} is not a text file (binary or not UTF-8 at byte offset 5)" in err, err
  err = run(tmp_path, weights)  # a folder: one line too (was an IsADirectoryError traceback)
  assert "Is a directory" in err, err


def _opencv_outputs(cfg, weights, images):
  """OpenCV DNN's yolo outputs: boxes xyxy [N, A, 4] input pixels (clipped, as jaxdet's decode),
  scores [N, A, C] (objectness x class; OpenCV zeroes those below its 0.2 threshold)."""
  return _opencv_forward(cfg, weights, images.astype(np.float32) / 255.0)


def _opencv_forward(cfg, weights, blobs):
  """`_opencv_outputs` of float32 NHWC network inputs (OpenCV's blobs, transposed)."""
  cv2 = pytest.importorskip("cv2", reason="OpenCV parity needs opencv-python(-headless) 4.x")
  if not hasattr(cv2.dnn, "readNetFromDarknet"):
    pytest.skip(f"OpenCV {cv2.__version__} has no Darknet reader (removed in 5.0)")
  net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
  net.setInput(np.ascontiguousarray(blobs.transpose(0, 3, 1, 2), np.float32))
  out = np.concatenate(net.forward(net.getUnconnectedOutLayersNames()), axis=1)
  s = blobs.shape[1]
  cx, cy, w, h = (out[..., i] * s for i in range(4))
  boxes = np.clip(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1), 0, s)
  return boxes, out[..., 5:]


# (cfg, input size): the tiny ones and YOLOv3-SPP at 96 px; YOLOv3 / YOLOv4 at 64 px.
PARITY = [("yolov3-tiny", 96), ("yolov4-tiny", 96),
          pytest.param("yolov3-spp", 64, marks=pytest.mark.slow),
          pytest.param("yolov3", 64, marks=pytest.mark.slow),
          pytest.param("yolov4", 64, marks=pytest.mark.slow)]


@pytest.mark.parametrize("name,size", PARITY)
def test_forward_equals_opencv_dnn(name, size, tmp_path):
  cfg, weights = _write(tmp_path, name, size)
  assert cli.main(["convert", "darknet", "--cfg", str(cfg), "--weights", str(weights),
                   "--output", str(tmp_path / "out")]) == 0
  det = jaxdet.load(tmp_path / "out")
  assert det.image_size == size and det.config.model.name == darknet.family_of(
      dc.plan_text(cfg.read_text()))
  images = np.random.default_rng(2).integers(0, 256, (2, size, size, 3), np.uint8)
  want_boxes, want_scores = _opencv_outputs(cfg, weights, images)
  boxes, scores = (np.asarray(x) for x in jax.jit(det.forward)(images))
  # Same anchor order as OpenCV (yolo layer, row, column, anchor).
  assert boxes.shape == want_boxes.shape and scores.shape == want_scores.shape
  np.testing.assert_allclose(boxes, want_boxes, rtol=1e-4, atol=1e-4 * size)
  kept = want_scores > 0
  assert kept.mean() > 0.2, kept.mean()  # non-vacuous
  np.testing.assert_allclose(scores[kept], want_scores[kept], rtol=1e-4, atol=1e-7)
  assert scores[~kept].max(initial=0) <= 0.2 + 1e-5


@pytest.mark.parametrize("name,size", [("yolov3-tiny", 96), ("yolov4-tiny", 96)])
def test_photos_equal_opencv_dnn_in_jax_and_onnx(name, size, tmp_path):
  """A converted Darknet model on real photos of any size: its network input is OpenCV's
  `blobFromImage(photo, 1 / 255, (S, S), swapRB=True)` (cv2.resize INTER_LINEAR on uint8), its
  raw outputs OpenCV DNN's, and `jaxdet.load(DIR).predict` / `jaxdet_export.Detector` give the
  detections of those outputs (the model's NMS) mapped to the photo's pixels."""
  import jaxdet_export
  from jaxdet import predict_inputs, testing
  from jaxdet.data.preprocess import normalize_image
  from jaxdet.models.postprocess import postprocess
  cv2 = pytest.importorskip("cv2", reason="OpenCV parity needs opencv-python(-headless) 4.x")
  cfg, weights = _write(tmp_path, name, size)
  # Above OpenCV's own threshold (it zeroes objectness x class under 0.2).
  assert cli.main(["convert", "darknet", "--cfg", str(cfg), "--weights", str(weights),
                   "--output", str(tmp_path / "out"),
                   "--config.postprocess.score_threshold=0.3"]) == 0
  det = jaxdet.load(tmp_path / "out")
  assert det.preprocess.interpolation == "opencv"
  jaxdet_export.export_onnx(det, tmp_path / "m.onnx")
  served = jaxdet_export.Detector(tmp_path / "m.onnx")
  photos = testing.photos()
  blobs = np.stack([cv2.dnn.blobFromImage(np.ascontiguousarray(p[..., ::-1]), 1 / 255.0,
                                          (size, size), swapRB=True)[0].transpose(1, 2, 0)
                    for p in photos.values()])
  groups = predict_inputs.network_inputs(list(photos.values()), size, det.preprocess)
  assert len(groups) == 1  # a stretch: one S x S program for every photo
  np.testing.assert_array_equal(groups[0].images, np.round(blobs * 255).astype(np.uint8))
  np.testing.assert_allclose(normalize_image(groups[0].images, det.preprocess), blobs, rtol=0,
                             atol=1e-7)
  want_boxes, want_scores = _opencv_forward(cfg, weights, blobs)
  boxes, scores = (np.asarray(x) for x in jax.jit(det.forward_normalized)(groups[0].images))
  np.testing.assert_allclose(boxes, want_boxes, rtol=1e-4, atol=1e-4 * size)
  kept = want_scores > 0
  np.testing.assert_allclose(scores[kept], want_scores[kept], rtol=1e-4, atol=1e-7)
  # The detections of OpenCV's outputs, mapped to each photo as `predict` maps its own.
  ref = jax.device_get(postprocess(want_boxes, np.where(kept, want_scores, 0.0).astype(np.float32),
                                   **det.postprocess_args()))
  ref["boxes"] = predict_inputs.boxes_to_images(ref["boxes"], groups[0].scale, groups[0].limits,
                                                ref["num_detections"])
  assert ref["num_detections"].sum() >= 10  # non-vacuous
  got = det.predict(list(photos.values()))
  for i, photo_name in enumerate(photos):
    n = int(ref["num_detections"][i])
    want = (ref["boxes"][i, :n], ref["scores"][i, :n], ref["classes"][i, :n])
    for what, out, index in (("jax", got, i), ("onnx", served.predict(photos[photo_name]), 0)):
      testing_torch.assert_photo_detections(out, want, index=index, min_count=0,
                                            what=(photo_name, what))
