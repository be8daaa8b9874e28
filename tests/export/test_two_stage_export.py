"""`faster_rcnn` ONNX export: what the contract test's ONNX parity (tests/models/test_contract.py,
batch 1 and 4, random and `shapes` images) does not cover."""

import jax
import jax.numpy as jnp
import pytest

import export_testlib as tl


def test_fp16_is_refused_clearly():
  pytest.importorskip("jax2onnx")
  from jaxdet import cli, models
  from jaxdet.inference.load import build_detector
  jaxdet_export = cli.import_export_package()
  config = tl.zoo_config("faster_rcnn", image_size=64)
  model = models.build(config.model, num_classes=len(tl.CLASS_NAMES))
  # Zero variables of the right shapes (no init compile): the refusal comes before any tracing.
  variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False)))
  detector = build_detector(config, variables, tl.CLASS_NAMES)
  with pytest.raises(ValueError, match="fp16 export is not supported for two-stage"):
    jaxdet_export.export_onnx(detector, None, fp16=True)


# --- Fast R-CNN (proposals="external", RoIPool): predict with proposals, its ONNX graph.

import numpy as np  # noqa: E402

S, P = 64, 16
# (H, W) of a batch of 4: predict letterboxes the non-square ones (proposals too).
SIZES = ((48, 80), (64, 64), (80, 40), (64, 64))


def _fast_rcnn_detector():
  """A Fast R-CNN RoIPool detector, random weights without an init compile: He-normal body and
  the predictor drawn as its init does, but with a wider class kernel so that scores spread."""
  from jaxdet import models
  from jaxdet.inference.load import build_detector
  config = tl.zoo_config("faster_rcnn", image_size=S)
  config.model.update(proposals="external", roi_pooler="pool")
  model = models.build(config.model, num_classes=len(tl.CLASS_NAMES))
  variables = tl.random_variables(model, S, seed=0, targets={"proposals": jnp.zeros((1, 1, 4))})
  rng = np.random.default_rng(1)
  params = dict(variables["params"])
  for name, std in (("cls_score", 0.003), ("bbox_pred", 0.001)):
    params[name] = {"kernel": jnp.asarray(rng.normal(0, std, params[name]["kernel"].shape),
                                          jnp.float32),
                    "bias": jnp.zeros(params[name]["bias"].shape)}
  return build_detector(config, {**variables, "params": params}, tl.CLASS_NAMES)


def _proposals(sizes, p, *, seed):
  """float32 [N, P, 4] xyxy boxes inside each (H, W) image, 4 to 30 px wide and tall."""
  rng = np.random.default_rng(seed)
  out = []
  for h, w in sizes:
    wh = rng.uniform(4, 30, (p, 2))
    xy = rng.uniform(0, 1, (p, 2)) * (np.asarray([w, h]) - wh)
    out.append(np.concatenate([xy, xy + wh], -1))
  return np.asarray(out, np.float32)


@pytest.fixture(scope="module")
def fast_rcnn():
  """(detector, images of SIZES, proposals [4, P, 4], mask [4, P], predict's output)."""
  detector = _fast_rcnn_detector()
  images = [tl.shapes_images(1, h, w, seed=20 + i)[0] for i, (h, w) in enumerate(SIZES)]
  proposals = _proposals(SIZES, P, seed=3)
  mask = np.ones((4, P), bool)
  mask[:, -3:] = False  # padding rows
  proposals[1, 2, 0] = np.nan  # ignored, as the model ignores non-finite rows
  return detector, images, proposals, mask, detector.predict(images, proposals=proposals,
                                                             proposal_mask=mask)


def test_fast_rcnn_predict_equals_the_model_on_the_same_proposals(fast_rcnn):
  from jaxdet import predict_inputs
  import models_testlib
  detector, images, proposals, mask, got = fast_rcnn
  inputs, scale, limits = predict_inputs.resize_batch(images, S, "letterbox")
  scaled = proposals * np.concatenate([scale, scale], axis=1)[:, None, :]
  boxes, scores = jax.jit(detector.forward)(inputs, scaled, mask)
  want = models_testlib.postprocess_reference(np.asarray(boxes), np.asarray(scores),
                                              **detector.postprocess_args())
  want["boxes"] = predict_inputs.boxes_to_images(want["boxes"], scale, limits,
                                                 want["num_detections"])
  assert np.all(got["num_detections"] >= 3), got["num_detections"]  # non-vacuous
  tl.assert_same_detections(got, want, box_atol=1e-3, score_atol=1e-6,
                            min_score=detector.postprocess["score_threshold"])
  # Masked rows do not matter (same shapes: no compile).
  moved = np.where(mask[..., None], proposals, proposals[:, :1] + 5.0)
  again = detector.predict(images, proposals=moved, proposal_mask=mask)
  for key in got:
    np.testing.assert_array_equal(again[key], got[key])


@pytest.fixture(scope="module")
def fast_rcnn_onnx(fast_rcnn, tmp_path_factory):
  """The detector's ONNX file (P + 4 proposal slots: the runtime pads) served by onnxruntime."""
  pytest.importorskip("jax2onnx")
  pytest.importorskip("onnxruntime")
  from jaxdet import cli
  jaxdet_export = cli.import_export_package()
  path = tmp_path_factory.mktemp("fast_rcnn") / "fast_rcnn.onnx"
  model = jaxdet_export.export_onnx(fast_rcnn[0], path, num_proposals=P + 4)
  assert [i.name for i in model.graph.input] == ["images", "proposals"]
  assert any(n.op_type == "MaxRoiPool" for n in model.graph.node)
  return jaxdet_export.Detector(path)


def test_fast_rcnn_onnx_matches_predict_at_batch_1_and_4(fast_rcnn, fast_rcnn_onnx):
  # Batch 1 is compared with predict's row of that image at batch 4 (rows are independent; a
  # batch-1 predict would compile the model once more).
  detector, images, proposals, mask, want = fast_rcnn
  served = fast_rcnn_onnx
  assert served.num_proposals == P + 4
  threshold = detector.postprocess["score_threshold"]
  got = served.predict(images, proposals=proposals, proposal_mask=mask)
  tl.assert_same_detections(got, want, min_score=threshold)
  for i in range(2):  # a letterboxed image and an S x S one
    one = served.predict(images[i], proposals=proposals[i:i + 1], proposal_mask=mask[i:i + 1])
    tl.assert_same_detections(one, {k: v[i:i + 1] for k, v in want.items()}, min_score=threshold)


def test_fast_rcnn_proposal_errors_are_one_line_and_name_the_shapes(fast_rcnn, fast_rcnn_onnx):
  from jaxdet import models
  from jaxdet.inference.load import build_detector
  detector, images, proposals, _, _ = fast_rcnn
  for predictor in (detector, fast_rcnn_onnx):
    with pytest.raises(ValueError, match=r"runs on external proposals \(Fast R-CNN\): pass "
                                         r"proposals=\[N, P, 4\]"):
      predictor.predict(images)
    with pytest.raises(ValueError, match=r"proposals must be a float array \[N, P, 4\] with "
                                         r"N = 4 images and P >= 1, got shape \(4, 16\)"):
      predictor.predict(images, proposals=proposals[..., 0])
    with pytest.raises(ValueError, match=r"N = 4 images .* got shape \(1, 16, 4\)"):
      predictor.predict(images, proposals=proposals[:1])
    with pytest.raises(ValueError, match=r"proposal_mask must be bool \[N, P\] = \(4, 16\)"):
      predictor.predict(images, proposals=proposals, proposal_mask=np.ones((4, 15), bool))
  with pytest.raises(ValueError, match=r"P = 21 boxes per image but fast_rcnn.onnx was exported "
                                       r"for at most 20"):
    fast_rcnn_onnx.predict(images, proposals=np.zeros((4, 21, 4), np.float32))
  # A Faster R-CNN (RPN) model refuses proposals (zero weights: the check precedes any trace).
  config = tl.zoo_config("faster_rcnn", image_size=S)
  model = models.build(config.model, num_classes=len(tl.CLASS_NAMES))
  variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, S, S, 3)), train=False)))
  with pytest.raises(ValueError, match=r"proposals= is only for Fast R-CNN models"):
    build_detector(config, variables, tl.CLASS_NAMES).predict(images, proposals=proposals)


def test_max_roi_pool_graph_equals_roi_pool():
  """The graph's RoIPool (ONNX MaxRoiPool) = `jaxdet.ops.roi_pool`, bit for bit, on
  all-negative bins, boxes past the map, inverted and sub-cell boxes and .5 roundings."""
  ort = pytest.importorskip("onnxruntime")
  from jaxdet.ops.roi_pool import roi_pool
  from jaxdet_export import two_stage_graph
  rng = np.random.default_rng(0)
  features = rng.normal(-1.0, 1.0, (2, 9, 11, 3)).astype(np.float32)  # mostly negative
  boxes = _proposals([(36, 44)] * 2, 12, seed=5)
  boxes[0, :4] = [[-8, -8, 6, 6], [30, 20, 60, 50], [20, 20, 10, 10], [3, 3, 3.5, 3.2]]
  boxes[1, :2] = [[2, 6, 10, 14], [6, 2, 22, 18]]  # x 0.5, 1.5, 2.5: half away from zero
  pooling = dict(kind="pool", level="p4", spatial_scale=0.25, output_size=3)
  graph = two_stage_graph.external_proposals_model(num_proposals=12, proposals_name="boxes",
                                                   pooling=pooling, features=3, opset=21)
  session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
  got = dict(zip([o.name for o in session.get_outputs()],
                 session.run(None, {"p4": features, "boxes": boxes})))["roi_feats"]
  want = np.asarray(roi_pool(jnp.asarray(features), jnp.asarray(boxes), output_size=3,
                             spatial_scale=0.25))
  assert (want < 0).mean() > 0.3  # all-negative bins are common
  np.testing.assert_array_equal(got, want)
