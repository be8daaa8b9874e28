"""GoogLeNet: torchvision parity with and without `transform_input`, and the auxiliary
classifiers in training mode."""

import jax
import numpy as np
import pytest

from jaxdet.convert import torchvision as tv_convert
from jaxdet.models.backbones import Classifier
from jaxdet.models.backbones.googlenet import GoogLeNet, GoogLeNetHead
from tests import testing_torch


@pytest.mark.parametrize("transform_input", [False, True])
def test_classifier_matches_torchvision(transform_input):
  testing_torch.assert_classifier_parity(
      "googlenet", transform_input=transform_input,
      config={"transform_input": transform_input})


def test_auxiliary_classifiers_in_training_match_torchvision():
  torch, _ = testing_torch.torch_modules()
  # Dropout off on both sides: training mode then differs only by batch statistics.
  model = testing_torch.torchvision_model("googlenet", dropout=0.0, dropout_aux=0.0)
  _, variables = tv_convert.from_torchvision("googlenet", testing_torch.numpy_state_dict(model),
                                             config={"transform_input": False})
  module = Classifier(backbone=GoogLeNet(transform_input=False),
                      head=GoogLeNetHead(1000, dropout=0.0, aux_dropout=0.0))
  images = testing_torch.random_images(4, 64)
  out, _ = jax.jit(lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"]))(
      variables, images)
  model.train()
  with torch.no_grad():
    ref = model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()))
  for key, want in (("logits", ref.logits), ("aux_logits1", ref.aux_logits1),
                    ("aux_logits2", ref.aux_logits2)):
    testing_torch.assert_relative_close(np.asarray(out[key]), want.numpy())
