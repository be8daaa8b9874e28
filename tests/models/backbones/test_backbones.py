"""Backbone output shapes/dtypes (traced with eval_shape to keep compile time out) and frozen BN."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxdet.models import backbones
from jaxdet.models.backbones.csp_darknet import CSPDarknet
from jaxdet.models.backbones.resnet import ResNet
from jaxdet.models.backbones.vgg import VGG16


def _shapes(module, size=64, batch=2):
  x = jnp.zeros((batch, size, size, 3), jnp.float32)
  out, variables = jax.eval_shape(
      lambda: module.init_with_output(jax.random.key(0), x, train=False))
  return out, variables


@pytest.mark.parametrize("depth,expansion", [(18, 1), (34, 1), (50, 4)])
def test_resnet_shapes(depth, expansion):
  out, variables = _shapes(ResNet(depth=depth, width=8))
  for level, ch in zip((2, 3, 4, 5), (8, 16, 32, 64)):
    chex.assert_shape(out[f"c{level}"], (2, 64 // 2**level, 64 // 2**level, ch * expansion))
    assert out[f"c{level}"].dtype == jnp.float32
  assert "batch_stats" in variables


def test_resnet_standard_parameter_counts_match_torchvision():
  # torchvision resnet18/50 without the fc layer: 11,176,512 and 23,508,032 parameters.
  for depth, want in ((18, 11_176_512), (50, 23_508_032)):
    _, variables = _shapes(ResNet(depth=depth), size=32, batch=1)
    assert sum(np.prod(p.shape) for p in jax.tree.leaves(variables["params"])) == want


@pytest.mark.parametrize("use_bn", [False, True])
def test_vgg16_shapes(use_bn):
  out, variables = _shapes(VGG16(use_bn=use_bn, width_divisor=16))
  chex.assert_shape([out["c2"], out["c3"], out["c4"], out["c5"]],
                    [(2, 16, 16, 16), (2, 8, 8, 32), (2, 4, 4, 32), (2, 2, 2, 32)])
  assert ("batch_stats" in variables) == use_bn


def test_vgg16_parameter_count_matches_torchvision_features():
  # torchvision vgg16().features has 14,714,688 parameters.
  _, variables = _shapes(VGG16(), size=32, batch=1)
  assert sum(np.prod(p.shape) for p in jax.tree.leaves(variables["params"])) == 14_714_688


@pytest.mark.parametrize("width,depth", [(0.125, 0.33), (0.25, 0.33)])
def test_csp_darknet_shapes(width, depth):
  out, _ = _shapes(CSPDarknet(width=width, depth=depth))
  base = (128, 256, 512, 1024)
  for level, b in zip((2, 3, 4, 5), base):
    chex.assert_shape(out[f"c{level}"], (2, 64 // 2**level, 64 // 2**level, int(b * width)))


def test_unknown_backbone_and_unsupported_frozen_bn_are_clear_errors():
  with pytest.raises(ValueError, match="unknown backbone"):
    backbones.build_backbone(ml_collections.ConfigDict({"backbone": "resnet9000x"}))
  with pytest.raises(ValueError, match="frozen_bn"):
    backbones.build_backbone(ml_collections.ConfigDict({"backbone": "csp_darknet",
                                                        "frozen_bn": True}))
  frozen_vgg = backbones.build_backbone(ml_collections.ConfigDict({"backbone": "vgg16_bn",
                                                                   "frozen_bn": True}))
  assert frozen_vgg.use_bn and frozen_vgg.frozen_bn
