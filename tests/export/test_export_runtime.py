"""`jaxdet_export.Detector`: onnxruntime serving of any image size, with clear input errors."""

import numpy as np
import onnx
import pytest

import jaxdet_export
import export_testlib as tl

S = 64


@pytest.fixture(scope="module")
def tiny():
  return tl.tiny_detector(image_size=S)


@pytest.fixture(scope="module")
def model_path(tiny, tmp_path_factory):
  path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
  jaxdet_export.export_onnx(tiny, path)
  return path


@pytest.fixture(scope="module")
def served(model_path):
  return jaxdet_export.Detector(model_path)


def test_reads_metadata_and_uses_cpu_here(served):
  assert served.class_names == tl.CLASS_NAMES
  assert served.image_size == S and not served.metadata.dynamic_image_size
  assert served.providers[-1] == "CPUExecutionProvider"
  assert "tiny.onnx" in repr(served)


@pytest.mark.parametrize("hw", [(S, S), (40, 100), (150, 90)])
def test_any_size_matches_jaxdet_predict_in_original_pixels(tiny, served, hw):
  images = tl.shapes_images(2, *hw, seed=hw[0])
  got, want = served.predict(images), tiny.predict(images)
  assert want["num_detections"].sum() >= 3
  assert got["classes"].dtype == np.int32 and got["num_detections"].dtype == np.int32
  tl.assert_same_detections(got, want)
  h, w = hw
  assert got["boxes"][..., 0::2].max() <= w and got["boxes"][..., 1::2].max() <= h


def test_mixed_sizes_and_single_image(tiny, served):
  images = [tl.shapes_images(1, 30, 70, seed=1)[0], tl.shapes_images(1, 64, 64, seed=2)[0]]
  got = served.predict(images)
  for i, image in enumerate(images):
    want = tiny.predict(image)
    one = served(image)  # a single [H, W, 3] image is a batch of one
    tl.assert_same_detections({k: v[i:i + 1] for k, v in got.items()}, want)
    tl.assert_same_detections(one, want)


def test_dynamic_export_serves_mixed_sizes(tiny, tmp_path):
  path = tmp_path / "dyn.onnx"
  jaxdet_export.export_onnx(tiny, path, dynamic_image_size=True)
  served = jaxdet_export.Detector(path)
  assert served.metadata.dynamic_image_size
  images = [tl.shapes_images(1, 50, 80, seed=3)[0], tl.shapes_images(1, 64, 64, seed=4)[0],
            tl.shapes_images(1, 50, 80, seed=5)[0]]
  got = served.predict(images)
  assert got["boxes"].shape == (3, tiny.postprocess["max_detections"], 4)
  # The S x S image is not resized, so it matches JAX exactly.
  tl.assert_same_detections({k: v[1:2] for k, v in got.items()}, tiny.predict(images[1]))
  assert np.all(got["boxes"][[0, 2], :, 0::2] <= 80) and np.all(got["boxes"][[0, 2], :, 1::2] <= 50)


@pytest.mark.parametrize("images, match", [
    (np.zeros((1, S, S, 3), np.float32), "uint8"),
    (np.zeros((S, S), np.uint8), r"\[N, H, W, 3\]"),
    (np.zeros((1, 1, S, S, 3), np.uint8), r"\[N, H, W, 3\]"),
    (np.zeros((1, S, S, 4), np.uint8), "3 \\(RGB\\) channels"),
    (np.zeros((1, S, S, 1), np.uint8), "3 \\(RGB\\) channels"),
    (np.zeros((0, S, S, 3), np.uint8), "empty"),
    (np.zeros((1, 0, S, 3), np.uint8), "empty"),
    ([], "empty"),
    ([np.zeros((S, S, 3), np.uint8), np.zeros((S, S, 3), np.int64)], "uint8"),
])
def test_bad_inputs_are_clear_errors(served, images, match):
  with pytest.raises(ValueError, match=match):
    served.predict(images)


def test_bad_files_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="not found"):
    jaxdet_export.Detector(tmp_path / "missing.onnx")
  corrupt = tmp_path / "corrupt.onnx"
  corrupt.write_bytes(b"\x08\x07not an onnx model at all")
  with pytest.raises(ValueError, match="cannot load ONNX model"):
    jaxdet_export.Detector(corrupt)
  foreign = tmp_path / "foreign.onnx"
  graph = onnx.helper.make_graph(
      [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
      [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.UINT8, [1, 2, 2, 3])],
      [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.UINT8, [1, 2, 2, 3])])
  onnx.save(onnx.helper.make_model(graph, ir_version=10,
                                   opset_imports=[onnx.helper.make_opsetid("", 21)]), str(foreign))
  with pytest.raises(ValueError, match="not a jaxdet ONNX export"):
    jaxdet_export.Detector(foreign)


def test_session_options_are_passed_on(model_path, served):
  import onnxruntime as ort
  options = ort.SessionOptions()
  options.intra_op_num_threads = 1
  one_thread = jaxdet_export.Detector(model_path, ["CPUExecutionProvider"], session_options=options)
  images = tl.shapes_images(1, S, S, seed=11)
  tl.assert_same_detections(one_thread.predict(images), served.predict(images), box_atol=1e-4,
                            score_atol=1e-6)


def test_paths_are_read_with_exif_orientation_and_pil_images_work(tiny, served, tmp_path):
  """Issue 10: a phone photo (EXIF Orientation=6) is predicted as displayed, as `jaxdet.load`."""
  from PIL import Image
  stored = tl.shapes_images(1, 48, 80, seed=21)[0]
  exif = Image.Exif()
  exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: 80 x 48
  path = tmp_path / "phone.jpg"
  Image.fromarray(stored).save(path, quality=100, subsampling=0, exif=exif)
  with Image.open(path) as im:
    displayed = np.asarray(im.transpose(Image.Transpose.ROTATE_270).convert("RGB"))
  assert displayed.shape == (80, 48, 3)
  got = served.predict(str(path))
  tl.assert_same_detections(got, served.predict(displayed), box_atol=1e-4, score_atol=1e-6)
  tl.assert_same_detections(got, tiny.predict(path))
  assert got["boxes"][..., 0::2].max() <= 48 and got["boxes"][..., 1::2].max() <= 80
  pil = served.predict([Image.fromarray(displayed), path])
  tl.assert_same_detections({k: v[:1] for k, v in pil.items()}, got, box_atol=1e-4,
                            score_atol=1e-6)


@pytest.mark.parametrize("images, match", [
    (np.zeros((1, S, S), np.uint8), rf"got shape \(1, {S}, {S}\)$"),
    ("/no/such/dir/photo_from_the_user.jpg", "image not found: /no/such/dir/photo_from_the_user"),
])
def test_errors_name_the_input_as_passed(served, images, match):
  with pytest.raises((ValueError, FileNotFoundError), match=match) as exc:
    served.predict(images)
  assert "<U" not in str(exc.value) and "got ()" not in str(exc.value)
