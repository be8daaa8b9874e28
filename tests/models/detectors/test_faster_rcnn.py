"""faster_rcnn specifics: RoI sampling, Fast R-CNN mode (external proposals, RoIPool), errors.

Traced with `jax.eval_shape` where only shapes and errors matter (no compile); the numbers of the
whole model are covered by the contract test and the torchvision parity test.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet import models
from jaxdet.models.detectors import faster_rcnn as fr
from jaxdet.ops import box_iou, matching

S = 64


def _targets(batch=2, proposals=None):
  t = {"boxes": jnp.asarray([[[4., 6., 30., 40.], [30., 20., 60., 50.]],
                             [[10., 10., 50., 30.], [0., 0., 0., 0.]]])[:batch],
       "classes": jnp.asarray([[1, 2], [0, 0]], jnp.int32)[:batch],
       "box_mask": jnp.asarray([[True, True], [True, False]])[:batch]}
  if proposals is not None:
    t["proposals"] = proposals
  return t


def test_roi_sampling_adds_ground_truth_and_caps_positives():
  targets = _targets()
  rng = np.random.default_rng(0)
  proposals = jnp.asarray(rng.uniform(0, 40, (2, 50, 2)), jnp.float32)
  proposals = jnp.concatenate([proposals, proposals + rng.uniform(4, 24, (2, 50, 2))], -1)
  mask = jnp.asarray(rng.random((2, 50)) < 0.8)
  rois, valid, labels, target_boxes = jax.jit(functools.partial(
      fr._sample_rois, num_samples=16, positive_fraction=0.25, fg_iou=0.5, bg_iou=0.5))(
          jax.random.key(0), proposals, mask, targets)
  chex.assert_shape([rois, target_boxes], (2, 16, 4))
  valid, labels = np.asarray(valid), np.asarray(labels)
  assert np.all((labels > 0).sum(1) <= 4) and np.all((labels > 0).sum(1) >= 1)  # GT added
  assert np.all(valid.sum(1) == 16) and np.all(labels[~valid] == 0)
  # Every positive RoI overlaps its target box >= 0.5, labelled with that box's class + 1.
  iou = np.asarray(jax.jit(jax.vmap(jax.vmap(lambda a, b: box_iou(a[None], b[None])[0, 0])))(
      rois, target_boxes))
  assert np.all(iou[labels > 0] >= 0.5)
  assert set(labels[0][labels[0] > 0]) <= {2, 3} and set(labels[1][labels[1] > 0]) <= {1}


def test_no_ground_truth_samples_only_negatives():
  targets = _targets()
  targets["box_mask"] = jnp.zeros_like(targets["box_mask"])
  proposals = jnp.tile(jnp.asarray([[0., 0., 20., 20.]]), (2, 10, 1))
  _, valid, labels, _ = jax.jit(functools.partial(
      fr._sample_rois, num_samples=8, positive_fraction=0.25, fg_iou=0.5, bg_iou=0.5))(
          jax.random.key(1), proposals, jnp.ones((2, 10), bool), targets)
  assert np.all(np.asarray(labels) == 0) and np.all(np.asarray(valid))


def _fast_rcnn(pooler):
  cfg = fr.test_config()
  cfg.update(proposals="external", roi_pooler=pooler)
  return cfg, models.build(cfg, num_classes=3)


@pytest.mark.parametrize("pooler", ["pool", "align"])
def test_fast_rcnn_mode_runs_the_roi_head_on_external_proposals(pooler):
  cfg, model = _fast_rcnn(pooler)
  images = jnp.zeros((2, S, S, 3))
  proposals = jnp.zeros((2, 5, 4))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False,
                                                targets={"proposals": proposals}))
  assert "rpn_head" not in variables["params"]
  preds = jax.eval_shape(lambda v: model.apply(v, images, train=False,
                                               targets={"proposals": proposals}), variables)
  assert preds["class_logits"].shape == (2, 5, 4) and preds["box_deltas"].shape == (2, 5, 4, 4)
  boxes, scores = jax.eval_shape(lambda p: fr.decode(p, image_size=S), preds)
  assert boxes.shape == (2, 5, 3, 4) and scores.shape == (2, 5, 3)

  def train_loss(v):
    preds, _ = model.apply(v, images, train=True, targets=_targets(proposals=proposals),
                           mutable=["batch_stats"], rngs={"sampler": jax.random.key(0)})
    return fr.loss_fn(preds, _targets(), config=cfg)

  loss, metrics = jax.eval_shape(train_loss, variables)
  assert loss.shape == () and "rpn_cls_loss" not in metrics


def test_wrong_proposals_name_the_key_and_shapes():
  _, model = _fast_rcnn("pool")
  images = jnp.zeros((2, S, S, 3))
  init = lambda targets: jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False,
                                                           targets=targets))
  with pytest.raises(ValueError, match=r"targets\['proposals'\] must be \[B, P, 4\] with B = 2, "
                                       r"got shape \(2, 5\)"):
    init({"proposals": jnp.zeros((2, 5))})
  with pytest.raises(ValueError, match=r"targets\['proposal_mask'\] must be \[B, P\]"):
    init({"proposals": jnp.zeros((2, 5, 4)), "proposal_mask": jnp.ones((2, 4), bool)})
  with pytest.raises(ValueError, match=r"needs targets\['proposals'\]"):
    init(None)


def test_non_finite_proposals_are_masked():
  proposals = jnp.asarray([[[0., 0., 10., 10.], [jnp.nan, 0., 5., 5.], [0., jnp.inf, 1., 1.]]])
  clean, mask = fr._check_proposals(proposals, None, 1)
  np.testing.assert_array_equal(np.asarray(mask), [[True, False, False]])
  assert np.all(np.isfinite(np.asarray(clean)))


def test_rpn_negatives_without_ground_truth():
  anchors = jnp.asarray([[0., 0., 10., 10.], [5., 5., 30., 30.]])
  codes = matching.match_boxes(jnp.zeros((1, 2, 4)), jnp.zeros((1, 2), bool), anchors,
                               high_threshold=0.7, low_threshold=0.3,
                               allow_low_quality_matches=True)
  np.testing.assert_array_equal(np.asarray(codes), [[-1, -1]])
