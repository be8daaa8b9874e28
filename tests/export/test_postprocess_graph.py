"""The ONNX post-processing graph against a NumPy loop and against `jaxdet.models.postprocess`."""

import numpy as np
import onnxruntime as ort
import pytest

from jaxdet_export import postprocess_graph
from export_testlib import postprocess_reference
from models_testlib import random_detections


def _run(model, boxes, scores):
  session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
  names = [o.name for o in session.get_outputs()]
  return dict(zip(names, session.run(None, {"raw_boxes": boxes, "raw_scores": scores})))


def _random_case(rng, *, n, a, c, quantize=False):
  xy = rng.uniform(0, 60, (n, a, 2))
  wh = rng.uniform(1, 30, (n, a, 2))
  boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
  scores = rng.uniform(0, 1, (n, a, c)).astype(np.float32)
  if quantize:  # many exact ties, and scores exactly at the threshold
    scores = np.round(scores * 10) / 10
  return boxes, scores.astype(np.float32)


def _check(out, ref):
  np.testing.assert_array_equal(out["num_detections"], ref["num_detections"])
  np.testing.assert_array_equal(out["detection_classes"], ref["classes"])
  np.testing.assert_allclose(out["detection_boxes"], ref["boxes"], rtol=0, atol=1e-5)
  np.testing.assert_allclose(out["detection_scores"], ref["scores"], rtol=0, atol=0)


@pytest.mark.parametrize("seed", range(12))
def test_matches_numpy_greedy_loop(seed):
  rng = np.random.default_rng(seed)
  n, a, c = int(rng.integers(1, 4)), int(rng.integers(3, 200)), int(rng.integers(1, 6))
  kw = dict(score_threshold=float(rng.uniform(0, 0.7)), iou_threshold=float(rng.uniform(0.2, 0.8)),
            max_detections=int(rng.integers(1, 60)), pre_nms_top_k=int(rng.integers(1, 500)))
  boxes, scores = _random_case(rng, n=n, a=a, c=c, quantize=seed % 3 == 0)
  model = postprocess_graph.postprocess_model(num_anchors=a, num_classes=c, opset=21, **kw)
  out = _run(model, boxes, scores)
  ref = postprocess_reference(boxes, scores, **kw)
  _check(out, ref)
  assert out["detection_boxes"].shape == (n, kw["max_detections"], 4)
  assert out["num_detections"].dtype == np.int64 and out["detection_classes"].dtype == np.int64


def test_suppression_is_per_class_and_threshold_is_inclusive():
  # Two identical boxes of different classes both survive; a same-class duplicate does not;
  # a score exactly at the threshold is kept, one just below is not.
  boxes = np.array([[[0, 0, 10, 10], [0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]]],
                   np.float32)
  scores = np.array([[[0.9, 0.0], [0.0, 0.8], [0.7, 0.0], [np.float32(0.3), 0.29999]]],
                    np.float32)
  model = postprocess_graph.postprocess_model(
      num_anchors=4, num_classes=2, score_threshold=0.3, iou_threshold=0.5, max_detections=5,
      pre_nms_top_k=8, opset=21)
  out = _run(model, boxes, scores)
  assert out["num_detections"].tolist() == [3]
  assert out["detection_classes"][0, :3].tolist() == [0, 1, 0]
  np.testing.assert_allclose(out["detection_scores"][0], [0.9, 0.8, 0.3, 0, 0], atol=1e-7)
  np.testing.assert_array_equal(out["detection_boxes"][0, 2], [50, 50, 60, 60])


def test_fewer_candidates_than_slots_pads_with_zeros():
  rng = np.random.default_rng(0)
  boxes, scores = _random_case(rng, n=2, a=3, c=2)
  kw = dict(score_threshold=0.0, iou_threshold=1.0, max_detections=10, pre_nms_top_k=100)
  model = postprocess_graph.postprocess_model(num_anchors=3, num_classes=2, opset=21, **kw)
  out = _run(model, boxes, scores)
  assert out["num_detections"].tolist() == [6, 6]
  _check(out, postprocess_reference(boxes, scores, **kw))


@pytest.mark.parametrize("batch", [1, 3])
def test_matches_jaxdet_postprocess(batch):
  from jaxdet.models import postprocess
  rng = np.random.default_rng(batch)
  boxes, scores = _random_case(rng, n=batch, a=150, c=4)
  kw = dict(score_threshold=0.3, iou_threshold=0.45, max_detections=25, pre_nms_top_k=300)
  out = _run(postprocess_graph.postprocess_model(num_anchors=150, num_classes=4, opset=21, **kw),
             boxes, scores)
  want = {k: np.asarray(v) for k, v in postprocess(boxes, scores, **kw).items()}
  assert want["num_detections"].min() >= 5  # non-vacuous
  np.testing.assert_array_equal(out["num_detections"], want["num_detections"])
  np.testing.assert_array_equal(out["detection_classes"], want["classes"])
  np.testing.assert_allclose(out["detection_boxes"], want["boxes"], rtol=0, atol=1e-5)
  np.testing.assert_allclose(out["detection_scores"], want["scores"], rtol=0, atol=0)


@pytest.mark.parametrize("class_specific", [False, True], ids=["agnostic", "specific"])
@pytest.mark.parametrize("per_level", [False, True, "class"], ids=["global", "per_level",
                                                                  "per_class"])
@pytest.mark.parametrize("batch", [1, 4])
def test_every_layout_and_option_matches_jaxdet_postprocess(class_specific, per_level, batch):
  from jaxdet.models import postprocess
  per_class, per_level = per_level == "class", per_level is True
  rng = np.random.default_rng(batch * 10 + 2 * class_specific + per_level + 7 * per_class)
  levels, c = (64, 16, 4, 1), 3
  a = sum(levels)
  boxes, scores = random_detections(rng, n=batch, a=a, c=c, class_specific=class_specific)
  kw = dict(score_threshold=0.3, iou_threshold=0.5, max_detections=40, pre_nms_top_k=25,
            pre_nms_top_k_per_level=per_level, level_sizes=levels if per_level else None,
            pre_nms_top_k_per_class=per_class)
  model = postprocess_graph.postprocess_model(num_anchors=a, num_classes=c, opset=21,
                                              class_specific_boxes=class_specific, **kw)
  out = _run(model, boxes, scores)
  want = {k: np.asarray(v) for k, v in postprocess(boxes, scores, **kw).items()}
  assert want["num_detections"].min() >= 10  # non-vacuous
  np.testing.assert_array_equal(out["num_detections"], want["num_detections"])
  np.testing.assert_array_equal(out["detection_classes"], want["classes"])
  np.testing.assert_allclose(out["detection_boxes"], want["boxes"], rtol=0, atol=0)
  np.testing.assert_allclose(out["detection_scores"], want["scores"], rtol=0, atol=0)
  _check(out, postprocess_reference(boxes, scores, **kw))


@pytest.mark.parametrize("seed", range(6))
def test_per_level_with_ties_matches_numpy_greedy_loop(seed):
  rng = np.random.default_rng(1000 + seed)
  levels = tuple(int(v) for v in rng.integers(1, 80, int(rng.integers(2, 5))))
  n, c = int(rng.integers(1, 4)), int(rng.integers(1, 5))
  kw = dict(score_threshold=0.3, iou_threshold=float(rng.uniform(0.3, 0.7)),
            max_detections=int(rng.integers(1, 50)), pre_nms_top_k=int(rng.integers(1, 60)),
            pre_nms_top_k_per_level=True, level_sizes=levels)
  specific = seed % 2 == 1
  boxes, scores = random_detections(rng, n=n, a=sum(levels), c=c, class_specific=specific,
                                    quantize=True)  # many exact ties, scores at the threshold
  model = postprocess_graph.postprocess_model(num_anchors=sum(levels), num_classes=c, opset=21,
                                              class_specific_boxes=specific, **kw)
  _check(_run(model, boxes, scores), postprocess_reference(boxes, scores, **kw))


@pytest.mark.parametrize("seed", range(3))
def test_per_class_with_ties_matches_numpy_greedy_loop(seed):
  rng = np.random.default_rng(2000 + seed)
  n, a, c = int(rng.integers(1, 4)), int(rng.integers(5, 90)), int(rng.integers(1, 5))
  kw = dict(score_threshold=0.3, iou_threshold=float(rng.uniform(0.3, 0.7)),
            max_detections=int(rng.integers(1, 50)), pre_nms_top_k=int(rng.integers(1, 100)),
            pre_nms_top_k_per_class=True)
  boxes, scores = random_detections(rng, n=n, a=a, c=c, class_specific=seed == 1, quantize=True)
  model = postprocess_graph.postprocess_model(num_anchors=a, num_classes=c, opset=21,
                                              class_specific_boxes=seed == 1, **kw)
  _check(_run(model, boxes, scores), postprocess_reference(boxes, scores, **kw))


def test_per_level_and_per_class_together_are_refused():
  from jaxdet.models import postprocess
  kw = dict(pre_nms_top_k_per_level=True, level_sizes=(2, 2), pre_nms_top_k_per_class=True)
  with pytest.raises(ValueError, match="cannot both"):
    postprocess_graph.postprocess_model(num_anchors=4, num_classes=2, opset=21, score_threshold=0.1,
                                        iou_threshold=0.5, max_detections=5, pre_nms_top_k=3, **kw)
  with pytest.raises(ValueError, match="cannot both"):
    postprocess(np.zeros((1, 4, 4), np.float32), np.zeros((1, 4, 2), np.float32), **kw)


@pytest.mark.parametrize("class_specific", [False, True], ids=["agnostic", "specific"])
def test_raw_outputs_keep_the_box_layout(class_specific):
  rng = np.random.default_rng(5)
  boxes, scores = random_detections(rng, n=2, a=6, c=3, class_specific=class_specific, size=80)
  model = postprocess_graph.raw_outputs_model(num_anchors=6, num_classes=3, opset=21,
                                              image_size=64, class_specific_boxes=class_specific)
  out = _run(model, boxes, scores)
  np.testing.assert_array_equal(out["boxes"], np.clip(boxes, 0, 64))
  np.testing.assert_array_equal(out["scores"], scores)


@pytest.mark.parametrize("bad", [dict(score_threshold=1.5), dict(iou_threshold=-0.1),
                                 dict(max_detections=0), dict(pre_nms_top_k=2.5),
                                 dict(score_threshold=float("nan")),
                                 dict(pre_nms_top_k_per_level=True),
                                 dict(pre_nms_top_k_per_level=True, level_sizes=(3, 3)),
                                 dict(pre_nms_top_k_per_level=True, level_sizes=(4, 0))])
def test_bad_parameters_are_clear_errors(bad):
  kw = dict(score_threshold=0.1, iou_threshold=0.5, max_detections=10, pre_nms_top_k=10)
  kw.update(bad)
  with pytest.raises(ValueError, match="level_sizes" if "level_sizes" in str(bad) or
                     "per_level" in str(bad) else next(iter(bad))):
    postprocess_graph.postprocess_model(num_anchors=4, num_classes=2, opset=21, **kw)


def test_zero_area_boxes_are_no_detections():
  """As `jaxdet.models.postprocess`: a zero-area box is dropped whatever its score."""
  boxes = np.array([[[10, 10, 30, 30], [64, 5, 64, 40], [5, 64, 20, 64], [0, 0, 0, 0],
                     [12, 12, 28, 28]]], np.float32)
  scores = np.array([[[0.6], [1.0], [1.0], [0.9], [0.7]]], np.float32)
  kw = dict(score_threshold=0.05, iou_threshold=0.5, max_detections=5, pre_nms_top_k=10)
  model = postprocess_graph.postprocess_model(num_anchors=5, num_classes=1, opset=21, **kw)
  out = _run(model, boxes, scores)
  assert int(out["num_detections"][0]) == 1
  _check(out, postprocess_reference(boxes, scores, **kw))
