"""postprocess vs a NumPy reference of the DESIGN.md algorithm with a greedy NMS loop."""

import chex
import numpy as np
import pytest

from jaxdet import models


def _np_iou(a, b):
  lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
  inter = max(rb[0] - lt[0], 0) * max(rb[1] - lt[1], 0)
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return inter / union if union > 0 else 0.0


def _np_postprocess(boxes, scores, score_threshold, iou_threshold, max_det, top_k):
  A, C = scores.shape
  flat = scores.reshape(-1)
  order = np.argsort(-flat, kind="stable")[:top_k]
  keep = []
  for i in order:
    if flat[i] < score_threshold:
      break
    a, c = divmod(int(i), C)
    if all(kc != c or _np_iou(boxes[a], boxes[ka]) <= iou_threshold for ka, kc, _ in keep):
      keep.append((a, c, flat[i]))
    if len(keep) == max_det:
      break
  out_b = np.zeros((max_det, 4), np.float32)
  out_s = np.zeros(max_det, np.float32)
  out_c = np.zeros(max_det, np.int32)
  for j, (a, c, s) in enumerate(keep):
    out_b[j], out_s[j], out_c[j] = boxes[a], s, c
  return out_b, out_s, out_c, len(keep)


@pytest.mark.parametrize("seed,top_k,max_det", [(0, 50, 10), (1, 1000, 20), (2, 7, 12)])
def test_postprocess_matches_numpy(seed, top_k, max_det):
  rng = np.random.default_rng(seed)
  B, A, C = 2, 40, 3
  xy = rng.uniform(0, 60, (B, A, 2)); wh = rng.uniform(5, 30, (B, A, 2))
  boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
  scores = rng.uniform(size=(B, A, C)).astype(np.float32)
  out = models.postprocess(boxes, scores, score_threshold=0.3, iou_threshold=0.5,
                           max_detections=max_det, pre_nms_top_k=top_k)
  chex.assert_shape([out["boxes"], out["scores"], out["classes"]], [(B, max_det, 4), (B, max_det),
                                                                   (B, max_det)])
  chex.assert_type([out["classes"], out["num_detections"]], [np.int32, np.int32])
  for b in range(B):
    want = _np_postprocess(boxes[b], scores[b], 0.3, 0.5, max_det, top_k)
    assert int(out["num_detections"][b]) == want[3]
    np.testing.assert_allclose(out["boxes"][b], want[0], rtol=1e-6)
    np.testing.assert_allclose(out["scores"][b], want[1], rtol=1e-6)
    np.testing.assert_array_equal(out["classes"][b], want[2])


def test_postprocess_all_below_threshold_is_empty():
  boxes = np.tile(np.asarray([[0, 0, 10, 10]], np.float32), (1, 5, 1))
  out = models.postprocess(boxes, np.full((1, 5, 2), 0.01, np.float32), score_threshold=0.5,
                           iou_threshold=0.5, max_detections=4, pre_nms_top_k=10)
  assert int(out["num_detections"][0]) == 0
  assert float(np.abs(out["boxes"]).sum()) == 0.0


def test_postprocess_rejects_bad_shapes():
  with pytest.raises(ValueError, match="scores"):
    models.postprocess(np.zeros((1, 5, 4), np.float32), np.zeros((1, 6, 2), np.float32),
                       score_threshold=0.1, iou_threshold=0.5, max_detections=3, pre_nms_top_k=5)
  with pytest.raises(ValueError, match="boxes_xyxy"):
    models.postprocess(np.zeros((5, 4), np.float32), np.zeros((1, 5, 2), np.float32),
                       score_threshold=0.1, iou_threshold=0.5, max_detections=3, pre_nms_top_k=5)
