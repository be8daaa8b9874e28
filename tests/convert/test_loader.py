"""`jaxdet.convert.loader.read_weights` on the `.pth` files users have besides plain state dicts:
training checkpoints (unwrapped), pickled models and garbage (one-line errors, nothing unpickled),
through the `jaxdet convert torchvision` CLI (issue 28)."""

import argparse
import os

import numpy as np
import pytest

from jaxdet import cli
from jaxdet.convert import loader
from jaxdet.train import checkpoint as ckpt
from tests import testing_torch


@pytest.fixture(scope="module")
def resnet18():
  """A torchvision ResNet-18 with random weights and 3 classes."""
  torch, torchvision = testing_torch.torch_modules()
  torch.manual_seed(0)
  return torchvision.models.resnet18(weights=None, num_classes=3).eval()


def _convert(capsys, weights, output):
  rc = cli.main(["convert", "torchvision", "--arch", "resnet18", "--weights", str(weights),
                 "--output", str(output)])
  out, err = capsys.readouterr()
  return rc, out, err.strip()


def _assert_one_line_error(capsys, weights, output, *fragments):
  rc, _, err = _convert(capsys, weights, output)
  assert rc == 1 and len(err.splitlines()) == 1, err
  assert err.startswith("jaxdet convert: error: ") and "Traceback" not in err, err
  for fragment in fragments:
    assert fragment in err, err
  assert not output.exists()  # a failing command writes nothing


def test_a_torchvision_references_checkpoint_is_unwrapped_with_a_note(resnet18, tmp_path, capsys):
  """What `references/classification/train.py` saves (with `--model-ema`): `args` is an
  `argparse.Namespace`, which `torch.load(weights_only=True)` alone refuses."""
  torch, _ = testing_torch.torch_modules()
  optimizer = torch.optim.SGD(resnet18.parameters(), lr=0.1, momentum=0.9)
  scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30)
  args = argparse.Namespace(model="resnet18", lr=0.1, epochs=90, data_path="/data/imagenet",
                            lr_steps=[16, 22], weights=None)
  ema = torch.optim.swa_utils.AveragedModel(resnet18)
  path = tmp_path / "model_89.pth"
  torch.save({"model": resnet18.state_dict(), "model_ema": ema.state_dict(),
              "optimizer": optimizer.state_dict(), "lr_scheduler": scheduler.state_dict(),
              "epoch": 89, "args": args}, path)
  rc, out, err = _convert(capsys, path, tmp_path / "out")
  assert rc == 0 and "converted resnet18" in out, err
  assert err == ("note: model_89.pth is a training checkpoint (keys 'model', 'model_ema', "
                 "'optimizer', 'lr_scheduler', 'epoch', ...): converting its 'model' state dict "
                 "(its 'model_ema' weights are not used)")
  variables, _ = ckpt.read_step_dir(ckpt.find_step_dir(tmp_path / "out"))
  np.testing.assert_array_equal(variables["params"]["head"]["fc"]["bias"],
                                resnet18.fc.bias.detach().numpy())


@pytest.mark.parametrize("key", ["state_dict", "model_state_dict"])
def test_other_checkpoint_conventions_are_unwrapped(resnet18, tmp_path, capsys, key):
  torch, _ = testing_torch.torch_modules()
  path = tmp_path / "ckpt.pt"
  torch.save({"epoch": 3, key: resnet18.state_dict(), "best_acc1": 0.5}, path)
  weights = loader.read_weights(path)
  assert set(weights) == set(resnet18.state_dict())
  assert f"converting its {key!r} state dict" in capsys.readouterr().err


def test_a_pickled_model_is_refused_in_one_line(resnet18, tmp_path, capsys):
  torch, _ = testing_torch.torch_modules()
  path = tmp_path / "whole.pth"
  torch.save(resnet18, path)  # instead of resnet18.state_dict()
  _assert_one_line_error(
      capsys, path, tmp_path / "out",
      "whole.pth holds a pickled model object (torchvision.models.resnet.ResNet), which jaxdet "
      "does not unpickle", "torch.save(model.state_dict(), path)")


class _Payload:
  """Pickles as a call to os.mkdir: what a malicious .pth file could run when unpickled."""

  def __init__(self, path):
    self.path = str(path)

  def __reduce__(self):
    return os.mkdir, (self.path,)


def test_nothing_beyond_tensors_is_unpickled(resnet18, tmp_path, capsys):
  torch, _ = testing_torch.torch_modules()
  marker = tmp_path / "ran"
  path = tmp_path / "evil.pth"
  torch.save({"model": resnet18.state_dict(), "args": _Payload(marker)}, path)
  _assert_one_line_error(capsys, path, tmp_path / "out", "evil.pth holds a pickled Python object")
  assert not marker.exists()


def test_a_dict_that_is_not_a_state_dict_names_its_keys(tmp_path, capsys):
  torch, _ = testing_torch.torch_modules()
  path = tmp_path / "stats.pth"
  torch.save({"epoch": 3, "losses": [0.5, 0.25], "net": {"w": 1}}, path)
  _assert_one_line_error(
      capsys, path, tmp_path / "out",
      "stats.pth holds a dict that is not a state dict (keys 'epoch', 'losses', 'net')",
      "'model' or 'state_dict' or 'model_state_dict'")
  torch.save([torch.zeros(2)], path)
  _assert_one_line_error(capsys, path, tmp_path / "out", "stats.pth holds a list, not a state dict")


@pytest.mark.parametrize("content", [b"", b"[net]\nwidth=416\n", os.urandom(4096)],
                         ids=["empty", "text", "random"])
def test_a_garbage_pth_is_one_line(tmp_path, capsys, content):
  testing_torch.torch_modules()
  path = tmp_path / "w.pth"
  path.write_bytes(content)
  _assert_one_line_error(
      capsys, path, tmp_path / "out",
      f"w.pth ({len(content)} bytes) is not a PyTorch state dict: the file is corrupt or was not "
      f"written by torch.save")


def test_a_garbage_safetensors_is_one_line(tmp_path, capsys):
  path = tmp_path / "w.safetensors"
  path.write_bytes(os.urandom(4096))
  _assert_one_line_error(capsys, path, tmp_path / "out",
                         "w.safetensors is not a safetensors file: corrupt or another format")
