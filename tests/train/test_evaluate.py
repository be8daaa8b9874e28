"""`jaxdet.train.evaluate.evaluate_workdir`: fast checks (the end-to-end run is in test_train_cli)."""

import pytest

from jaxdet.inference import load as load_lib
from jaxdet.train import checkpoint as ckpt
from jaxdet.train import evaluate as evaluate_lib


class _Loaded(Exception):
  pass


def test_evaluate_workdir_loads_with_jaxdet_inference(tmp_path, monkeypatch):
  """The loader moved to `jaxdet.inference.load`; `jaxdet.train.load` is now the lazily exported
  function, so `from jaxdet.train import load` gave a function and `evaluate --workdir` died with
  "'function' object has no attribute 'load'"."""
  monkeypatch.setattr(ckpt, "resolve_checkpoint", lambda workdir, checkpoint: tmp_path / "7")

  def fake_load(path):
    raise _Loaded(path)

  monkeypatch.setattr(load_lib, "load", fake_load)
  with pytest.raises(_Loaded, match="7"):
    evaluate_lib.evaluate_workdir(tmp_path)
