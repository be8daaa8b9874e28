"""Spatial pyramid pooling (SPPNet) and the YOLO SPP block, against torch and a plain loop."""

import chex
import jax
import numpy as np
import pytest

import testing_torch
from jaxdet.models import spp


@pytest.mark.parametrize("hw", [(7, 5), (13, 16), (1, 3)])
def test_fixed_length_and_equal_to_adaptive_max_pool(hw):
  torch, _ = testing_torch.torch_modules()
  x = np.random.default_rng(0).standard_normal((2,) + hw + (3,)).astype(np.float32)
  got = np.asarray(jax.jit(spp.spatial_pyramid_pool)(x))
  chex.assert_shape(got, (2, 3 * 21))
  t = torch.from_numpy(x.transpose(0, 3, 1, 2))
  want = np.concatenate([torch.nn.functional.adaptive_max_pool2d(t, n).numpy()
                         .transpose(0, 2, 3, 1).reshape(2, -1) for n in (1, 2, 4)], -1)
  np.testing.assert_array_equal(got, want)
  # Level 1 is the global max.
  np.testing.assert_array_equal(got[:, :3], x.max(axis=(1, 2)))


def test_spp_block_keeps_size_and_pools_windows():
  x = np.random.default_rng(1).standard_normal((1, 9, 8, 2)).astype(np.float32)
  got = np.asarray(spp.spp_block(x, (3, 5)))
  chex.assert_shape(got, (1, 9, 8, 6))
  np.testing.assert_array_equal(got[..., :2], x)
  for i, j in [(0, 0), (4, 3), (8, 7)]:
    np.testing.assert_array_equal(got[0, i, j, 2:4], x[0, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
                                  .reshape(-1, 2).max(0))
    np.testing.assert_array_equal(got[0, i, j, 4:], x[0, max(i - 2, 0):i + 3, max(j - 2, 0):j + 3]
                                  .reshape(-1, 2).max(0))


def test_bad_levels():
  with pytest.raises(ValueError, match="levels"):
    spp.spatial_pyramid_pool(np.zeros((1, 4, 4, 1), np.float32), (0, 2))
