"""`jaxdet train` end to end on the real `shapes/tiny` data and a tiny YOLO: files, eval report,
resume, `jaxdet.load`, and one-line errors."""

import json
import pathlib

import numpy as np
import pytest

import jaxdet
from jaxdet import cli
from jaxdet.train import logging as log_lib

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "experiments" / "shapes_yolo_anchor_free.py")


def _args(workdir, data_dir, *extra):
  return ["train", "--config", CONFIG, "--workdir", str(workdir), "--no-progress",
          "--config.dataset=shapes/tiny", f"--config.data_dir={data_dir}",
          "--config.total_steps=3", "--config.batch_size=4", "--config.image_size=64",
          "--config.model.width=0.0625", "--config.eval_every=3", "--config.eval_batch_size=8",
          "--config.tensorboard=false", "--config.log_every=1", *extra]


@pytest.mark.slow
def test_train_cli_end_to_end_and_resume(tmp_path, capsys):
  workdir, data_dir = tmp_path / "run", tmp_path / "data"
  assert cli.main(_args(workdir, data_dir)) == 0
  out = capsys.readouterr().out
  assert "final: AP=" in out
  for name in ("config.json", "metrics.jsonl", "predictions.png", "eval/coco_stats.json",
               "eval/pr_curve.png", "eval/confusion_matrix.png"):
    assert (workdir / name).is_file(), name
  config = json.loads((workdir / "config.json").read_text())
  assert config["total_steps"] == 3 and config["model"]["width"] == 0.0625
  records = log_lib.read_metrics(workdir)
  assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3]
  evals = [r for r in records if r["split"] == "eval"]
  assert len(evals) == 1 and 0.0 <= evals[0]["AP"] <= 1.0
  assert sorted(p.name for p in (workdir / "checkpoints" / "latest").iterdir()) == ["3"]

  det = jaxdet.load(workdir)
  assert det.class_names[:2] == ("circle", "square") and det.image_size == 64
  out = det.predict(np.zeros((2, 100, 80, 3), np.uint8))
  assert out["boxes"].shape == (2, 100, 4) and out["num_detections"].shape == (2,)

  # Same command again: resumes at step 3 and trains nothing more; a longer run continues.
  assert cli.main(_args(workdir, data_dir)) == 0
  assert len([r for r in log_lib.read_metrics(workdir) if r["split"] == "train"]) == 3
  assert cli.main(_args(workdir, data_dir, "--config.total_steps=4", "--config.eval_every=0")) == 0
  steps = [r["step"] for r in log_lib.read_metrics(workdir) if r["split"] == "train"]
  assert steps == [1, 2, 3, 4]


@pytest.mark.parametrize("extra,message", [
    (["--config.total_stepz=3"], "unknown config key 'total_stepz'"),
    (["--config.batch_size=four"], "expected an int"),
    (["--config.model.width"], "needs a value"),
])
def test_train_cli_bad_overrides_are_one_line_errors(tmp_path, capsys, extra, message):
  args = ["train", "--config", CONFIG, "--workdir", str(tmp_path), *extra]
  assert cli.main(args) == 2
  err = capsys.readouterr().err
  assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_train_cli_missing_config(tmp_path, capsys):
  assert cli.main(["train", "--workdir", str(tmp_path / "new")]) == 2
  assert "--config is required" in capsys.readouterr().err
  assert cli.main(["train", "--config", str(tmp_path / "nope.py"), "--workdir", str(tmp_path)]) == 2
  assert "config file not found" in capsys.readouterr().err
