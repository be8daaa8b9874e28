"""VGG-11/13/16/19 with and without BatchNorm: torchvision parity of the converted classifiers."""

import pytest

from tests import testing_torch


@pytest.mark.parametrize("arch", [a for d in (11, 13, 16, 19) for a in (f"vgg{d}", f"vgg{d}_bn")])
def test_classifier_matches_torchvision(arch):
  # 32 px: the 1x1 pool5 map is spread to 7x7 by the adaptive pool, as torchvision does.
  testing_torch.assert_classifier_parity(arch, image_size=32)
