"""ResNet-18..152: torchvision parity of the converted classifiers."""

import pytest

from tests import testing_torch


@pytest.mark.parametrize("arch", [
    "resnet18", "resnet34", "resnet50", "resnet101",
    pytest.param("resnet152", marks=pytest.mark.slow)])
def test_classifier_matches_torchvision(arch):
  testing_torch.assert_classifier_parity(arch)
