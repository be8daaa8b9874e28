"""AlexNet: torchvision parity, and stride-aligned detection features."""

import jax
import jax.numpy as jnp
import ml_collections

from jaxdet.models import backbones
from tests import testing_torch


def test_classifier_matches_torchvision():
  testing_torch.assert_classifier_parity("alexnet")


def test_detection_features_are_padded_to_the_stride_grid():
  # The unpadded 11x11/4 conv and 3x3/2 pools give 63/31/15/7 at 256 px; detectors need 64..8.
  module = backbones.build_backbone(ml_collections.ConfigDict({"backbone": "alexnet"}))
  out, _ = jax.eval_shape(lambda: module.init_with_output(
      jax.random.key(0), jnp.zeros((1, 256, 256, 3)), train=False))
  assert {k: v.shape[1:3] for k, v in out.items()} == {
      "c2": (64, 64), "c3": (32, 32), "c4": (16, 16), "c5": (8, 8)}
