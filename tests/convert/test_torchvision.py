"""`jaxdet convert torchvision`: file round trips (.pth, .safetensors), strictness, and transfer
of a converted classifier into a detector's backbone through `init_from`."""

import sys

import jax
import ml_collections
import numpy as np
import pytest

from jaxdet import cli
from jaxdet.convert import torchvision as tv_convert
from jaxdet.train import checkpoint as ckpt
from tests import testing_torch


@pytest.fixture(scope="module")
def resnet18():
  """`(torch model, NumPy state dict)` of a randomized torchvision ResNet-18."""
  model = testing_torch.torchvision_model("resnet18")
  return model, testing_torch.numpy_state_dict(model)


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_cli_round_trip_matches_torchvision(resnet18, tmp_path, suffix, capsys):
  torch, _ = testing_torch.torch_modules()
  model, sd = resnet18
  weights = tmp_path / f"resnet18{suffix}"
  if suffix == ".pth":
    torch.save(model.state_dict(), weights)
  else:
    from safetensors.numpy import save_file
    save_file(sd, str(weights))
  out = tmp_path / "converted"
  assert cli.main(["convert", "torchvision", "--arch", "resnet18", "--weights", str(weights),
                   "--output", str(out), "--image-size", "96",
                   "--config.postprocess.score_threshold=0.001"]) == 0
  assert "converted resnet18" in capsys.readouterr().out
  variables, meta = ckpt.read_step_dir(ckpt.find_step_dir(out))
  module, expected = tv_convert.from_torchvision("resnet18", sd)
  _assert_trees_equal(variables, expected)
  config = ml_collections.ConfigDict(__import__("json").loads(meta["config"]))
  assert config.image_size == 96 and config.postprocess.score_threshold == 0.001
  assert config.model.backbone == "resnet18" and tuple(config.model.preprocess.mean) == (
      0.485, 0.456, 0.406)
  assert len(meta["class_names"]) == 1000 and meta["source"]["arch"] == "resnet18"
  images = testing_torch.random_images(2, 64)
  testing_torch.assert_relative_close(module.apply(variables, images, train=False),
                                      testing_torch.torch_forward(model, images))
  # A second conversion into the same folder is refused.
  assert cli.main(["convert", "torchvision", "--arch", "resnet18", "--weights", str(weights),
                   "--output", str(out)]) == 1
  assert "already holds" in capsys.readouterr().err


def test_safetensors_needs_no_torch_and_pth_without_torch_is_a_clear_error(
    resnet18, tmp_path, monkeypatch):
  from safetensors.numpy import save_file
  _, sd = resnet18
  save_file(sd, str(tmp_path / "w.safetensors"))
  (tmp_path / "w.pth").write_bytes(b"not read")
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
  assert set(tv_convert.read_weights(tmp_path / "w.safetensors")) == set(sd)
  with pytest.raises(tv_convert.ConversionError, match="needs PyTorch"):
    tv_convert.read_weights(tmp_path / "w.pth")
  with pytest.raises(tv_convert.ConversionError, match="must be .pth"):
    (tmp_path / "w.npz").write_bytes(b"")
    tv_convert.read_weights(tmp_path / "w.npz")


def test_conversion_is_strict_and_names_the_key(resnet18, tmp_path, capsys):
  _, sd = resnet18
  missing = {k: v for k, v in sd.items() if k != "layer2.0.bn1.running_var"}
  with pytest.raises(tv_convert.ConversionError, match=r"missing key 'layer2.0.bn1.running_var'"):
    tv_convert.from_torchvision("resnet18", missing)
  with pytest.raises(tv_convert.ConversionError, match=r"unexpected key 'layer5.0.conv1.weight'"):
    tv_convert.from_torchvision("resnet18", dict(sd, **{"layer5.0.conv1.weight": sd["fc.bias"]}))
  bad = dict(sd, **{"layer1.1.conv2.weight": np.zeros((64, 64, 1, 3), np.float32)})
  with pytest.raises(tv_convert.ConversionError,
                     match=r"'layer1.1.conv2.weight' has shape \(64, 64, 1, 3\).*\(64, 64, 3, 3\)"):
    tv_convert.from_torchvision("resnet18", bad)
  with pytest.raises(tv_convert.ConversionError, match="unknown torchvision arch 'resnet9'"):
    tv_convert.from_torchvision("resnet9", sd)
  # A state dict of another arch: the first foreign key is named.
  with pytest.raises(tv_convert.ConversionError, match="key"):
    tv_convert.from_torchvision("resnet34", sd)
  # The CLI reports the same in one line.
  from safetensors.numpy import save_file
  save_file(missing, str(tmp_path / "m.safetensors"))
  assert cli.main(["convert", "torchvision", "--arch", "resnet18", "--weights",
                   str(tmp_path / "m.safetensors"), "--output", str(tmp_path / "o")]) == 1
  assert "missing key 'layer2.0.bn1.running_var'" in capsys.readouterr().err


def test_num_classes_follows_the_state_dict_and_torch_tensors_are_accepted():
  torch, _ = testing_torch.torch_modules()
  model = testing_torch.torchvision_model("resnet18", num_classes=7)
  module, variables = tv_convert.from_torchvision("resnet18", model.state_dict())
  images = testing_torch.random_images(2, 64)
  logits = module.apply(variables, images, train=False)
  assert logits.shape == (2, 7)
  testing_torch.assert_relative_close(logits, testing_torch.torch_forward(model, images))


@pytest.mark.slow
def test_init_from_copies_the_converted_backbone_into_retinanet(resnet18, tmp_path):
  import functools
  from jaxdet import models
  from jaxdet.train import config as config_lib
  from jaxdet.train import loop
  _, sd = resnet18
  from safetensors.numpy import save_file
  save_file(sd, str(tmp_path / "r18.safetensors"))
  source = tmp_path / "classifier"
  assert cli.main(["convert", "torchvision", "--arch", "resnet18", "--weights",
                   str(tmp_path / "r18.safetensors"), "--output", str(source)]) == 0
  converted, _ = ckpt.read_step_dir(ckpt.find_step_dir(source))

  detector = models.get_detector("retinanet")
  config = config_lib.base_config()
  config.model = detector.default_config()
  config.model.update(backbone="resnet18", fpn_features=32, head_convs=1)
  config.update(image_size=64, batch_size=2, total_steps=1, eval_every=0, tensorboard=False)
  config.optimizer.learning_rate = 0.0
  config.init_from.checkpoint = str(source)

  def batches(start_step):
    del start_step
    while True:
      yield {"image": np.zeros((2, 64, 64, 3), np.float32),
             "boxes": np.zeros((2, 4, 4), np.float32), "classes": np.zeros((2, 4), np.int32),
             "box_mask": np.zeros((2, 4), bool), "image_id": np.arange(2)}

  def no_eval():
    raise AssertionError("evaluation is off")

  components = loop.Components(
      class_names=("a", "b"), model=models.build(config.model, num_classes=2),
      loss_fn=functools.partial(detector.loss_fn, config=config.model), decode=detector.decode,
      train_batches=batches, eval_batches=no_eval, ground_truth=no_eval)
  loop.train_and_evaluate(config, tmp_path / "detector", components=components, progress=False)
  trained, _ = ckpt.read_step_dir(ckpt.find_step_dir(tmp_path / "detector"))
  _assert_trees_equal(trained["params"]["backbone"], converted["params"]["backbone"])
