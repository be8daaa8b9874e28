"""DenseNet-121/161/169/201: torchvision parity, including the legacy key names of its files."""

import re

import pytest

from jaxdet.convert import torchvision as tv_convert
from tests import testing_torch


@pytest.mark.parametrize("arch", [
    "densenet121",
    pytest.param("densenet161", marks=pytest.mark.slow),
    pytest.param("densenet169", marks=pytest.mark.slow),
    pytest.param("densenet201", marks=pytest.mark.slow)])
def test_classifier_matches_torchvision(arch):
  testing_torch.assert_classifier_parity(arch)


def test_legacy_key_names_of_pretrained_files_are_accepted():
  # torchvision's published DenseNet files say `denselayer1.norm.1.weight`.
  model = testing_torch.torchvision_model("densenet121")
  sd = testing_torch.numpy_state_dict(model)
  legacy = {re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v
            for k, v in sd.items()}
  assert any(".norm.1." in k for k in legacy)
  _, new = tv_convert.from_torchvision("densenet121", sd)
  _, old = tv_convert.from_torchvision("densenet121", legacy)
  assert (old["params"]["backbone"]["denseblock2_layer3_unit1"]["bn"]["scale"]
          == new["params"]["backbone"]["denseblock2_layer3_unit1"]["bn"]["scale"]).all()
