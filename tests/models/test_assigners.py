"""Task-aligned assigner vs a plain NumPy loop reference on small random cases."""

import chex
import jax
import numpy as np
import pytest

from jaxdet.models import assigners


def _np_iou(a, b):
  lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
  inter = max(rb[0] - lt[0], 0) * max(rb[1] - lt[1], 0)
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return inter / union if union > 0 else 0.0


def _np_assign(scores, pred, points, gt, cls, mask, topk, alpha, beta, eps=1e-9):
  A, C = scores.shape
  M = gt.shape[0]
  align = np.zeros((M, A))
  iou = np.zeros((M, A))
  inside = np.zeros((M, A), bool)
  for g in range(M):
    for a in range(A):
      x, y = points[a]
      inside[g, a] = mask[g] and min(x - gt[g, 0], y - gt[g, 1], gt[g, 2] - x, gt[g, 3] - y) > eps
      iou[g, a] = _np_iou(gt[g], pred[a])
      if inside[g, a]:
        align[g, a] = scores[a, cls[g]]**alpha * iou[g, a]**beta
  pos = np.zeros((M, A), bool)
  for g in range(M):
    order = np.argsort(-align[g], kind="stable")[:topk]
    for a in order:
      pos[g, a] = inside[g, a]
  fg = np.zeros(A, bool)
  gt_index = np.zeros(A, int)
  for a in range(A):
    cands = [g for g in range(M) if pos[g, a]]
    if cands:
      best = max(cands, key=lambda g: (iou[g, a], -g))
      for g in cands:
        pos[g, a] = g == best
      fg[a], gt_index[a] = True, best
  target = np.zeros((A, C))
  boxes = np.zeros((A, 4))
  for g in range(M):
    anchors = np.nonzero(pos[g])[0]
    if len(anchors) == 0:
      continue
    max_align = align[g, anchors].max()
    max_iou = iou[g, anchors].max()
    for a in anchors:
      target[a, cls[g]] = align[g, a] * max_iou / (max_align + eps)
      boxes[a] = gt[g]
  return fg, gt_index, boxes, target


def _random_case(rng, A_side=6, M=5, C=4, stride=8.0):
  ys, xs = np.meshgrid(np.arange(A_side), np.arange(A_side), indexing="ij")
  points = (np.stack([xs.ravel(), ys.ravel()], -1) + 0.5) * stride
  A = points.shape[0]
  size = A_side * stride
  c = rng.uniform(0, size, (M, 2)); wh = rng.uniform(6, size / 2, (M, 2))
  gt = np.concatenate([c - wh / 2, c + wh / 2], -1)
  pc = points + rng.normal(0, 4, (A, 2)); pwh = rng.uniform(4, size / 2, (A, 2))
  pred = np.concatenate([pc - pwh / 2, pc + pwh / 2], -1)
  scores = rng.uniform(0.01, 1, (A, C))
  cls = rng.integers(0, C, M)
  mask = rng.uniform(size=M) > 0.3
  return [x.astype(np.float32) for x in (scores, pred, points, gt)] + [cls.astype(np.int32), mask]


@pytest.mark.parametrize("seed", range(6))
def test_task_aligned_assign_matches_loop_reference(seed):
  rng = np.random.default_rng(seed)
  scores, pred, points, gt, cls, mask = _random_case(rng)
  kw = dict(topk=4, alpha=0.5, beta=6.0)
  got = jax.jit(lambda *a: assigners.task_aligned_assign(*a, **kw))(scores, pred, points, gt, cls,
                                                                      mask)
  fg, gt_index, boxes, target = _np_assign(scores.astype(np.float64), pred, points, gt, cls, mask,
                                           4, 0.5, 6.0)
  chex.assert_shape(got.target_scores, (36, 4))
  chex.assert_type([got.fg_mask, got.gt_index, got.target_scores], [bool, np.int32, np.float32])
  np.testing.assert_array_equal(got.fg_mask, fg)
  np.testing.assert_array_equal(np.where(fg, got.gt_index, 0), np.where(fg, gt_index, 0))
  np.testing.assert_allclose(got.target_boxes_xyxy, boxes, atol=1e-5)
  np.testing.assert_allclose(got.target_scores, target, rtol=1e-3, atol=1e-6)
  assert fg.any()  # the case exercises positives


def test_empty_ground_truth_gives_no_positives():
  rng = np.random.default_rng(0)
  scores, pred, points, gt, cls, _ = _random_case(rng)
  got = assigners.task_aligned_assign(scores, pred, points, gt, cls, np.zeros(5, bool))
  assert not np.any(got.fg_mask)
  assert float(np.abs(got.target_scores).sum()) == 0.0


def test_each_gt_takes_at_most_topk_points():
  rng = np.random.default_rng(3)
  scores, pred, points, gt, cls, mask = _random_case(rng, A_side=8, M=3)
  got = assigners.task_aligned_assign(scores, pred, points, gt, cls, np.ones(3, bool), topk=3)
  counts = np.bincount(np.asarray(got.gt_index)[np.asarray(got.fg_mask)], minlength=3)
  assert np.all(counts <= 3)
