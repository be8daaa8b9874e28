"""jaxdet.ops boxes/nms against torchvision.ops (runs when the bench extra is installed)."""

import functools

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
tvo = pytest.importorskip("torchvision.ops")

from jaxdet import ops, testing  # pylint: disable=g-import-not-at-top

pytestmark = pytest.mark.torch


random_boxes_xyxy = functools.partial(testing.random_boxes_xyxy, xy_range=(0.0, 200.0),
                                      wh_range=(0.5, 60.0))
clustered_boxes_xyxy = functools.partial(testing.clustered_boxes_xyxy, num_objects=8,
                                         center_range=(30.0, 170.0), size_range=(10.0, 60.0),
                                         jitter=3.0)


def tv(fn, *arrays, **kwargs):
  return fn(*[torch.from_numpy(np.ascontiguousarray(a)) for a in arrays], **kwargs).numpy()


@pytest.mark.parametrize("name", ["box_iou", "generalized_box_iou", "distance_box_iou",
                                  "complete_box_iou"])
def test_pairwise_equals_torchvision(name):
  rng = np.random.default_rng(0)
  boxes1 = random_boxes_xyxy(rng, 40)
  boxes2 = np.concatenate([random_boxes_xyxy(rng, 30), boxes1[:10]])
  got = jax.jit(getattr(ops, name))(boxes1, boxes2)
  np.testing.assert_allclose(got, tv(getattr(tvo, name), boxes1, boxes2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["generalized_box_iou_loss", "distance_box_iou_loss",
                                  "complete_box_iou_loss"])
def test_losses_equal_torchvision(name):
  rng = np.random.default_rng(1)
  boxes1 = random_boxes_xyxy(rng, 100)
  boxes2 = random_boxes_xyxy(rng, 100, xy_range=(0, 60))
  got = jax.jit(getattr(ops, name))(boxes1, boxes2)
  np.testing.assert_allclose(got, tv(getattr(tvo, name), boxes1, boxes2, reduction="none"),
                             rtol=1e-5, atol=1e-6)


def test_loss_gradients_equal_torchvision():
  rng = np.random.default_rng(2)
  boxes1 = random_boxes_xyxy(rng, 30)
  boxes2 = random_boxes_xyxy(rng, 30, xy_range=(0, 60))
  for name in ["generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss"]:
    grad = jax.jit(jax.grad(lambda b, fn=getattr(ops, name): fn(b, boxes2).sum()))(boxes1)
    pred = torch.from_numpy(boxes1).requires_grad_(True)
    getattr(tvo, name)(pred, torch.from_numpy(boxes2), reduction="sum").backward()
    np.testing.assert_allclose(grad, pred.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("fmt", ["xywh", "cxcywh"])
def test_box_convert_area_clip_small_equal_torchvision(fmt):
  rng = np.random.default_rng(3)
  boxes = random_boxes_xyxy(rng, 50, xy_range=(0, 300))
  np.testing.assert_allclose(ops.box_convert(boxes, "xyxy", fmt),
                             tv(tvo.box_convert, boxes, in_fmt="xyxy", out_fmt=fmt), rtol=1e-6)
  other = tv(tvo.box_convert, boxes, in_fmt="xyxy", out_fmt=fmt)
  np.testing.assert_allclose(ops.box_convert(other, fmt, "xyxy"),
                             tv(tvo.box_convert, other, in_fmt=fmt, out_fmt="xyxy"), rtol=1e-6)
  np.testing.assert_allclose(ops.box_area(boxes), tv(tvo.box_area, boxes), rtol=1e-6)
  np.testing.assert_array_equal(ops.clip_boxes_to_image(boxes, (150, 200)),
                                tv(tvo.clip_boxes_to_image, boxes, size=(150, 200)))
  keep = np.flatnonzero(np.asarray(ops.remove_small_boxes(boxes, 20.0)))
  np.testing.assert_array_equal(keep, tv(tvo.remove_small_boxes, boxes, min_size=20.0))


@pytest.mark.parametrize("layout", ["random", "clustered"])
@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_nms_equals_torchvision(layout, iou_threshold):
  rng = np.random.default_rng(4)
  make = random_boxes_xyxy if layout == "random" else clustered_boxes_xyxy
  boxes = make(rng, 1000)
  scores = rng.uniform(0, 1, 1000).astype(np.float32)
  expected = tv(tvo.nms, boxes, scores, iou_threshold=iou_threshold)
  for max_output_size in (50, 1000):
    result = jax.jit(functools.partial(ops.nms, iou_threshold=iou_threshold,
                                       max_output_size=max_output_size))(boxes, scores)
    n = min(len(expected), max_output_size)
    assert int(result.num_valid) == n
    np.testing.assert_array_equal(result.indices[:n], expected[:n])


def test_nms_threshold_edge_and_ties_equal_torchvision():
  # IoU 0.5 exactly (kept at 0.5), and IoU 3/10 (float32 0.30000001 > 0.3: suppressed).
  boxes = np.float32([[0, 0, 10, 10], [0, 0, 10, 5], [100, 0, 110, 1], [100, 0, 103, 1]])
  scores = np.float32([0.9, 0.8, 0.7, 0.6])
  for thr in (0.5, 0.3, 0.2999999):
    expected = tv(tvo.nms, boxes, scores, iou_threshold=thr)
    result = ops.nms(boxes, scores, iou_threshold=thr, max_output_size=4)
    np.testing.assert_array_equal(result.indices[:len(expected)], expected)
    assert int(result.num_valid) == len(expected)
  rng = np.random.default_rng(5)
  boxes = random_boxes_xyxy(rng, 500, xy_range=(0, 100))
  scores = (rng.integers(0, 5, 500) / 4).astype(np.float32)  # many ties
  expected = tv(tvo.nms, boxes, scores, iou_threshold=0.5)
  result = ops.nms(boxes, scores, iou_threshold=0.5, max_output_size=500)
  np.testing.assert_array_equal(result.indices[:len(expected)], expected)


@pytest.mark.parametrize("num_boxes", [300, 2000])  # torchvision switches algorithm at 4000 coords
def test_batched_nms_equals_torchvision(num_boxes):
  rng = np.random.default_rng(6)
  boxes = clustered_boxes_xyxy(rng, num_boxes)
  scores = rng.uniform(0, 1, num_boxes).astype(np.float32)
  classes = rng.integers(0, 10, num_boxes)
  expected = tv(tvo.batched_nms, boxes, scores, classes, iou_threshold=0.5)
  result = jax.jit(functools.partial(ops.batched_nms, iou_threshold=0.5, max_output_size=200))(
      boxes, scores, classes.astype(np.int32))
  n = min(len(expected), 200)
  assert int(result.num_valid) == n
  np.testing.assert_array_equal(result.indices[:n], expected[:n])
