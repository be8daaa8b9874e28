"""torchvision `fcn_resnet50` / `fcn_resnet101` -> jaxdet FCN: logits of `out` and `aux`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet.convert import torchvision as tv_convert
from jaxdet.convert import torchvision_fcn
from tests import testing_torch

SIZE = 72  # not a multiple of 8: the bilinear upsampling's edges and the dilated convs' padding


def test_fcn_resnet50_logits_match_torchvision(tmp_path):
  import jaxdet
  from safetensors.numpy import save_file
  from jaxdet import cli
  from jaxdet.data import preprocess
  model = testing_torch.torchvision_model("fcn_resnet50", image_size=SIZE, weights_backbone=None,
                                          aux_loss=True, num_classes=5)
  sd = testing_torch.numpy_state_dict(model)
  module, variables = tv_convert.from_torchvision("fcn_resnet50", sd)
  images = testing_torch.random_images(1, SIZE)
  out = jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, images)
  ref = testing_torch.torch_forward(model, images)
  assert set(out) == {"out", "aux"} == set(ref)
  for key in ("out", "aux"):
    assert out[key].shape == (1, SIZE, SIZE, 5)
    testing_torch.assert_relative_close(out[key], ref[key])

  # `jaxdet convert` -> `jaxdet.load` -> predict: torchvision's masks on torchvision's input.
  save_file(sd, str(tmp_path / "fcn.safetensors"))
  assert cli.main(["convert", "torchvision", "--arch", "fcn_resnet50", "--weights",
                   str(tmp_path / "fcn.safetensors"), "--output", str(tmp_path / "out"),
                   "--image-size", str(SIZE)]) == 0
  segmenter = jaxdet.load(tmp_path / "out")
  assert segmenter.task == "segmentation" and segmenter.class_names[0] == "background"
  pixels = np.random.default_rng(1).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
  masks = segmenter.predict(pixels)["masks"]
  ref = testing_torch.torch_forward(model, preprocess.normalize_image(
      pixels, preprocess.settings(torchvision_fcn.fcn_config("fcn_resnet50").model.preprocess)))
  assert masks.dtype == np.int32 and masks.shape == (2, SIZE, SIZE)
  assert np.mean(masks == ref["out"].argmax(-1)) > 0.999  # float32 near-ties may differ


def test_fcn_resnet101_names_cover_the_state_dict():
  torch, torchvision = testing_torch.torch_modules()
  with torch.device("meta"):  # shapes only: nothing allocated or initialized
    model = torchvision.models.get_model("fcn_resnet101", weights=None, weights_backbone=None,
                                         aux_loss=True)
  sd = {k: np.broadcast_to(np.float32(0), tuple(v.shape)) for k, v in model.state_dict().items()}
  config, names = torchvision_fcn.CONVERTER.config("fcn_resnet101", sd, image_size=None)
  assert config.model.backbone == "resnet101" and config.model.aux and names[0] == "__background__"
  from jaxdet.models import segmentation
  module = segmentation.build(config.model, num_classes=21)
  abstract = jax.eval_shape(lambda: module.init(
      jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.float32), train=False))
  tv_convert.convert_variables(torchvision_fcn._fcn, abstract, sd)  # strict: raises on any gap


def test_without_aux_head_and_bad_arch():
  assert torchvision_fcn.CONVERTER.config("fcn_resnet50", {"classifier.4.bias": np.zeros(3)},
                                          image_size=64)[0].model.aux is False
  with pytest.raises(tv_convert.ConversionError, match="classifier.4.bias"):
    torchvision_fcn.CONVERTER.config("fcn_resnet50", {}, image_size=64)
