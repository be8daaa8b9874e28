"""`export_onnx`: graph contract and parity with `Detector.predict` on a stand-in detector.

Parity for every registered family: tests/models/test_contract.py.
"""

import importlib.metadata
import json

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
def tiny_onnx(tiny):
  return jaxdet_export.export_onnx(tiny, None)


def _images(kind, n, *, size=S, seed=0):
  if kind == "random":
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), np.uint8)
  return tl.shapes_images(n, size, size, seed=seed)


def test_graph_contract_and_metadata(tiny, tiny_onnx, tmp_path):
  model = tiny_onnx
  onnx.checker.check_model(model, full_check=True)
  (inp,) = model.graph.input
  assert inp.name == "images"
  assert inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
  dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
  assert dims == ["N", S, S, 3]
  outs = {o.name: (o.type.tensor_type.elem_type,
                   [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim])
          for o in model.graph.output}
  k = tiny.postprocess["max_detections"]
  assert outs == {"num_detections": (onnx.TensorProto.INT64, ["N"]),
                  "detection_boxes": (onnx.TensorProto.FLOAT, ["N", k, 4]),
                  "detection_scores": (onnx.TensorProto.FLOAT, ["N", k]),
                  "detection_classes": (onnx.TensorProto.INT64, ["N", k])}
  ops = {n.op_type for n in model.graph.node}
  assert {"TopK", "NonMaxSuppression", "Conv"} <= ops
  props = {p.key: p.value for p in model.metadata_props}
  assert json.loads(props["class_names"]) == list(tl.CLASS_NAMES)
  assert json.loads(props["input_size"]) == S
  assert json.loads(props["score_threshold"]) == pytest.approx(0.1)
  assert json.loads(props["iou_threshold"]) == pytest.approx(0.5)
  assert props["model_name"] == '"yolo_anchor_free"'
  assert json.loads(props["jaxdet_version"]) == importlib.metadata.version("jaxdet")
  # The file written to disk is the same model.
  path = tmp_path / "sub" / "m.onnx"
  jaxdet_export.export_onnx(tiny, path)
  assert onnx.load(str(path)).graph.node[0].op_type == model.graph.node[0].op_type


@pytest.mark.parametrize("kind", ["random", "shapes"])
@pytest.mark.parametrize("batch", [1, 3])
def test_tiny_parity_with_predict(tiny, tiny_onnx, kind, batch):
  images = _images(kind, batch, seed=batch)
  got = tl.as_predict_dict(tl.run_onnx(tiny_onnx, images))
  want = tiny.predict(images)
  assert want["num_detections"].sum() >= 3 * batch
  tl.assert_same_detections(got, want)


def test_thresholds_and_sizes_override_the_config(tiny):
  model = jaxdet_export.export_onnx(tiny, None, image_size=96, max_detections=7, score_threshold=0.3,
                             iou_threshold=0.3, pre_nms_top_k=50)
  images = _images("shapes", 2, size=96, seed=3)
  got = tl.as_predict_dict(tl.run_onnx(model, images))
  import dataclasses
  want = dataclasses.replace(tiny, image_size=96, postprocess=dict(
      score_threshold=0.3, iou_threshold=0.3, max_detections=7, pre_nms_top_k=50)).predict(images)
  assert got["boxes"].shape == (2, 7, 4) and want["num_detections"].sum() >= 2
  tl.assert_same_detections(got, want)


def test_dynamic_size_is_letterbox_then_fixed_graph(tiny, tiny_onnx):
  from jaxdet_export import preprocess_graph
  dynamic = jaxdet_export.export_onnx(tiny, None, dynamic_image_size=True)
  dims = [d.dim_param or d.dim_value for d in dynamic.graph.input[0].type.tensor_type.shape.dim]
  assert dims == ["N", "H", "W", 3]
  # At S x S nothing is resized: identical to the fixed-size export.
  square = _images("shapes", 2, seed=4)
  fixed = tl.run_onnx(tiny_onnx, square)
  for key, value in tl.run_onnx(dynamic, square).items():
    np.testing.assert_array_equal(value, fixed[key])
  # Elsewhere: the in-graph letterbox, the fixed graph, then boxes / scale clipped to the image.
  images = tl.shapes_images(3, 45, 100, seed=5)
  got = tl.run_onnx(dynamic, images)
  boxed, box_scale, box_limit = tl.run_onnx(
      preprocess_graph.letterbox_model(image_size=S, opset=21), images).values()
  ref = tl.run_onnx(tiny_onnx, boxed)
  assert ref["num_detections"].sum() >= 3
  valid = np.arange(ref["detection_boxes"].shape[1])[None, :] < ref["num_detections"][:, None]
  ref["detection_boxes"] = np.where(
      valid[..., None], np.clip(ref["detection_boxes"] / box_scale, 0, box_limit), 0)
  tl.assert_same_detections(tl.as_predict_dict(got), tl.as_predict_dict(ref), box_atol=1e-4,
                            score_atol=0)


def test_fp16_runs_and_stays_close(tiny, tiny_onnx):
  model = jaxdet_export.export_onnx(tiny, None, fp16=True)
  assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
  images = _images("shapes", 3, seed=6)
  got, ref = tl.run_onnx(model, images), tl.run_onnx(tiny_onnx, images)
  assert got["detection_boxes"].dtype == np.float32 and got["num_detections"].dtype == np.int64
  # Every confident fp32 detection has an fp16 twin: same class, box within 1 px.
  matched = 0
  for i in range(len(images)):
    for j in range(ref["num_detections"][i]):
      if ref["detection_scores"][i, j] < 0.2:
        continue
      n = got["num_detections"][i]
      same = (got["detection_classes"][i, :n] == ref["detection_classes"][i, j]) & np.all(
          np.abs(got["detection_boxes"][i, :n] - ref["detection_boxes"][i, j]) <= 1.0, axis=-1)
      assert same.any()
      matched += 1
  assert matched >= 5


def test_without_nms_outputs_the_decoded_network(tiny):
  model = jaxdet_export.export_onnx(tiny, None, include_nms=False)
  assert "NonMaxSuppression" not in {n.op_type for n in model.graph.node}
  images = _images("random", 2, seed=7)
  out = tl.run_onnx(model, images)
  boxes, scores = (np.asarray(t) for t in tiny.forward(images))
  np.testing.assert_allclose(out["boxes"], boxes, atol=1e-3)
  np.testing.assert_allclose(out["scores"], scores, atol=1e-5)


def test_explicitly_padded_max_pool_exports_exactly():
  # jax2onnx 0.17 treats Linen max_pool's ((lo, hi), ...) padding as VALID; export fixes that.
  detector = tl.tiny_detector(image_size=S, explicit_pool_padding=True)
  model = jaxdet_export.export_onnx(detector, None, include_nms=False)
  images = _images("random", 2, seed=8)
  out = tl.run_onnx(model, images)
  boxes, scores = (np.asarray(t) for t in detector.forward(images))
  np.testing.assert_allclose(out["boxes"], boxes, atol=1e-3)
  np.testing.assert_allclose(out["scores"], scores, atol=1e-5)


@pytest.mark.parametrize("bad, match", [
    (dict(opset=13), "opset"), (dict(opset=30), "opset"), (dict(image_size=0), "image_size"),
    (dict(score_threshold=2.0), "score_threshold"), (dict(max_detections=-1), "max_detections"),
])
def test_bad_settings_are_clear_errors(tiny, bad, match):
  with pytest.raises(ValueError, match=match):
    jaxdet_export.export_onnx(tiny, None, **bad)


# A torchvision-converted model's preprocessing: pixels / 255, ImageNet mean/std, stretch to S.
TORCHVISION_STRETCH = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
                       "value_range": 1.0, "resize": "stretch"}


@pytest.fixture(scope="module")
def tv_stretch():
  detector = tl.tiny_detector(image_size=S, preprocess=TORCHVISION_STRETCH)
  return (detector, jaxdet_export.export_onnx(detector, None),
          jaxdet_export.export_onnx(detector, None, dynamic_image_size=True))


def test_forward_and_graph_read_the_model_normalization():
  from jaxdet.models import yolo_anchor_free as yolo
  pre = {"mean": (0.2, 0.3, 0.4), "std": (0.5, 0.6, 0.7), "value_range": 1.0}
  detector = tl.tiny_detector(image_size=S, preprocess=pre)
  images = _images("random", 2, seed=9)
  x = (images / 255.0 - np.float64(pre["mean"])) / np.float64(pre["std"])
  preds = detector.model.apply(detector.variables, np.float32(x), train=False)
  want = [np.asarray(t) for t in yolo.decode(preds, image_size=S)]
  got = [np.asarray(t) for t in detector.forward(images)]
  np.testing.assert_allclose(got[0], want[0], atol=1e-3)
  np.testing.assert_allclose(got[1], want[1], atol=1e-5)
  default = np.asarray(tl.tiny_detector(image_size=S).forward(images)[1])
  assert np.abs(default - got[1]).max() > 1e-2  # the config changed what the network sees
  raw = tl.run_onnx(jaxdet_export.export_onnx(detector, None, include_nms=False), images)
  np.testing.assert_allclose(raw["boxes"], got[0], atol=1e-3)
  np.testing.assert_allclose(raw["scores"], got[1], atol=1e-5)


@pytest.mark.parametrize("batch", [1, 4])
def test_torchvision_stretch_model_predict_equals_onnx(tv_stretch, batch):
  detector, fixed, _ = tv_stretch
  props = {p.key: p.value for p in fixed.metadata_props}
  assert json.loads(props["resize"]) == "stretch"
  images = _images("shapes", batch, seed=20 + batch)
  want = detector.predict(images)
  assert want["num_detections"].sum() >= 3 * batch
  tl.assert_same_detections(tl.as_predict_dict(tl.run_onnx(fixed, images)), want)


@pytest.mark.parametrize("batch", [1, 4])
def test_torchvision_stretch_model_non_square_images(tv_stretch, batch):
  from jaxdet_export import preprocess_graph
  from jaxdet.data import preprocess
  detector, fixed, dynamic = tv_stretch
  h, w = 45, 100
  images = tl.shapes_images(batch, h, w, seed=30 + batch)
  # predict stretches (not letterboxes): equal to predict on the stretched images, mapped back.
  want = detector.predict(images)
  stretched = np.stack([preprocess.stretch_image(im, S)[0] for im in images])
  ref = detector.predict(stretched)
  assert ref["num_detections"].sum() >= 3 * batch
  valid = np.arange(ref["boxes"].shape[1])[None, :] < ref["num_detections"][:, None]
  ref["boxes"] = np.where(valid[..., None], ref["boxes"] / np.float32([S / w, S / h] * 2), 0)
  tl.assert_same_detections(want, ref, box_atol=1e-4, score_atol=0)
  # The dynamic graph stretches in the graph, runs the fixed graph and maps boxes back.
  got = tl.run_onnx(dynamic, images)
  graph_stretched, box_scale, box_limit = tl.run_onnx(
      preprocess_graph.resize_model(image_size=S, opset=21, resize="stretch"), images).values()
  np.testing.assert_array_equal(box_scale, np.float32([S / w, S / h] * 2))
  np.testing.assert_array_equal(box_limit, np.float32([w, h, w, h]))
  onnx_ref = tl.run_onnx(fixed, graph_stretched)
  valid = (np.arange(onnx_ref["detection_boxes"].shape[1])[None, :]
           < onnx_ref["num_detections"][:, None])
  onnx_ref["detection_boxes"] = np.where(
      valid[..., None], np.clip(onnx_ref["detection_boxes"] / box_scale, 0, box_limit), 0)
  tl.assert_same_detections(tl.as_predict_dict(got), tl.as_predict_dict(onnx_ref), box_atol=1e-4,
                            score_atol=0)


def test_per_level_top_k_model_exports_and_matches_predict(tmp_path):
  """A RetinaNet with torchvision's per-level top-k (what `jaxdet convert` writes) exports: the
  exporter checked the settings before adding the levels' sizes (issue 28: `jaxdet export` of a
  converted RetinaNet failed with 'pre_nms_top_k_per_level needs level_sizes ... got None')."""
  import dataclasses
  detector = tl.zoo_detector("retinanet", image_size=S)
  detector = dataclasses.replace(detector, postprocess=dict(
      detector.postprocess, pre_nms_top_k=50, pre_nms_top_k_per_level=True))
  model = jaxdet_export.export_onnx(detector, tmp_path / "m.onnx")
  props = {p.key: p.value for p in model.metadata_props}
  assert json.loads(props["pre_nms_top_k_per_level"]) is True
  images = _images("shapes", 4, seed=7)
  want = detector.predict(images)
  assert want["num_detections"].sum() >= 3
  tl.assert_same_detections(jaxdet_export.Detector(tmp_path / "m.onnx").predict(images), want)
