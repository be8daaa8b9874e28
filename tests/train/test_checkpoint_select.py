"""`checkpoint.resolve_checkpoint`: which step folder `--checkpoint best|latest|STEP` picks."""

import pytest

from jaxdet.train import checkpoint as ckpt


def _fake_steps(workdir, kind, steps):
  for step in steps:
    for item in ("model", "meta"):
      (workdir / "checkpoints" / kind / str(step) / item).mkdir(parents=True)


def test_latest_and_step_numbers(tmp_path):
  _fake_steps(tmp_path, "latest", [4, 6])
  _fake_steps(tmp_path, "best", [2])
  (tmp_path / "checkpoints" / "latest" / "8.orbax-checkpoint-tmp-1").mkdir()  # incomplete save
  assert ckpt.resolve_checkpoint(tmp_path, "latest").name == "6"
  assert ckpt.resolve_checkpoint(tmp_path, "4").parent.name == "latest"
  assert ckpt.resolve_checkpoint(tmp_path, 2).parent.name == "best"
  with pytest.raises(FileNotFoundError, match="no checkpoint of step 9 .*steps kept: 2, 4, 6"):
    ckpt.resolve_checkpoint(tmp_path, "9")
  with pytest.raises(ValueError, match="'best', 'latest' or a step number, got 'newest'"):
    ckpt.resolve_checkpoint(tmp_path, "newest")


def test_nothing_there(tmp_path):
  with pytest.raises(FileNotFoundError, match="no latest checkpoint"):
    ckpt.resolve_checkpoint(tmp_path, "latest")
  with pytest.raises(FileNotFoundError, match="no checkpoint found"):
    ckpt.resolve_checkpoint(tmp_path, "best")
