"""`layers.max_pool(ceil_mode=True)` and `layers.adaptive_avg_pool` against torch on odd sizes."""

import numpy as np
import pytest

from jaxdet.models import layers
from tests import testing_torch


@pytest.mark.parametrize("size", [7, 8, 13, 14, 15])
@pytest.mark.parametrize("window,stride,padding", [(3, 2, 0), (2, 2, 0), (3, 1, 1), (3, 2, 1)])
def test_ceil_mode_max_pool_matches_torch(size, window, stride, padding):
  torch, _ = testing_torch.torch_modules()
  x = testing_torch.random_images(2, size)
  want = torch.nn.functional.max_pool2d(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), window,
                                        stride, padding, ceil_mode=True).numpy()
  got = np.asarray(layers.max_pool(x, window=window, stride=stride, padding=padding,
                                   ceil_mode=True))
  np.testing.assert_array_equal(got, want.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("size,out", [(1, 7), (2, 7), (5, 3), (13, 6), (14, 7), (9, 4)])
def test_adaptive_avg_pool_matches_torch(size, out):
  torch, _ = testing_torch.torch_modules()
  x = testing_torch.random_images(2, size)
  want = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),
                                                 out).numpy()
  got = np.asarray(layers.adaptive_avg_pool(x, out))
  np.testing.assert_allclose(got, want.transpose(0, 2, 3, 1), rtol=1e-6, atol=1e-6)
