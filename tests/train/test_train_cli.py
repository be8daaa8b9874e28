"""`jaxdet train` end to end on the real `shapes/tiny` data and a tiny YOLO: files, eval report,
resume, `jaxdet.load`, and one-line errors."""

import json
import pathlib
import re

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
def test_train_cli_end_to_end_and_resume(tmp_path, tiny_data_dir, capsys):
  workdir, data_dir = tmp_path / "run", tiny_data_dir
  assert cli.main(_args(workdir, data_dir)) == 0
  out = capsys.readouterr().out
  assert "final: AP=" in out
  for name in ("config.json", "metrics.jsonl", "predictions.png", "eval/coco_stats.json",
               "eval/pr_curve.png", "eval/confusion_matrix.png"):
    assert (workdir / name).is_file(), name
  # Issue 28: readable tiles (was 66 px cells): 8 validation images of 64 px in a 3 x 3 grid.
  from PIL import Image
  from jaxdet.data import draw
  grid = np.asarray(Image.open(workdir / "predictions.png"))
  assert min(grid.shape[:2]) >= 3 * (draw.MIN_TILE + 2) + 2, grid.shape
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
  assert (workdir / "curves.png").is_file()

  # `jaxdet evaluate --workdir`: the step-3 model on validation reproduces training's report.
  capsys.readouterr()
  assert cli.main(["evaluate", "--workdir", str(workdir), "--checkpoint", "3"]) == 0
  out = capsys.readouterr().out
  report = workdir / "evaluate" / "validation-step3"
  assert f"report: {report}" in out and "AP50" in out
  for name in ("coco_stats.json", "coco_table.txt", "pr_curve.png", "confusion_matrix.png"):
    assert (report / name).is_file(), name
  assert (json.loads((report / "coco_stats.json").read_text())
          == json.loads((workdir / "eval" / "coco_stats.json").read_text()))
  assert cli.main(["evaluate", "--workdir", str(workdir), "--split", "test", "--checkpoint",
                   "latest", "--json", str(tmp_path / "test.json")]) == 0
  assert (workdir / "evaluate" / "test-step4" / "coco_stats.json").is_file()
  assert 0 <= json.loads((tmp_path / "test.json").read_text())["AP"] <= 1
  capsys.readouterr()
  for extra, message in ((["--checkpoint", "7"], "no checkpoint of step 7 under .*steps kept: "),
                         (["--split", "val"], r"has no split 'val' \(--split=val\); its splits: "),
                         (["--checkpoint", "newest"], "'best', 'latest' or a step number")):
    assert cli.main(["evaluate", "--workdir", str(workdir), *extra]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("extra,message", [
    (["--config.eval_split=val"], r"no split 'val' \(--config.eval_split=val\); its splits: test "
                                  r"\(8\), train \(32\), validation \(8\)"),
    (["--config.dataset=shapez"], "shapez"),  # the message itself is jaxdet.data's
])
def test_train_cli_bad_dataset_or_split_fails_before_workdir_and_training(
    tmp_path, tiny_data_dir, capsys, extra, message):
  workdir = tmp_path / "run"
  assert cli.main(_args(workdir, tiny_data_dir, *extra)) == 1
  err = capsys.readouterr().err
  assert re.search(message, err), err
  assert not workdir.exists()  # checked before the workdir (and any step)


@pytest.mark.parametrize("extra,message", [
    (["--config.augment=bogus"], r"--config.augment: unknown augment preset 'bogus'"),
    (["--config.batch_size=0"], r"--config.batch_size=0: must be an integer >= 1"),
    (["--config.optimizer.learning_rate=-1"], r"learning_rate=-1.0: must be a finite number"),
    (["--config.init_from.checkpoint=/no/such/run", "--config.init_from.include_regex=^b"],
     r"no checkpoint found under /no/such/run"),
])
def test_train_cli_bad_config_values_fail_before_the_workdir(tmp_path, tiny_data_dir, capsys,
                                                             extra, message):
  """These failed only after the workdir and its config.json were written."""
  workdir = tmp_path / "run"
  assert cli.main(_args(workdir, tiny_data_dir, *extra)) == 1
  err = capsys.readouterr().err
  assert re.search(message, err) and len(err.strip().splitlines()) == 1, err
  assert not workdir.exists()


@pytest.mark.parametrize("dataset,message", [
    ("boxless", r"dataset 'boxless' has no ground-truth boxes in split 'train' "
                r"\(--config.train_split=train\): nothing to learn"),
    ("boxless_val", r"dataset 'boxless_val' has no ground-truth boxes in split 'validation' "
                    r"\(--config.eval_split=validation\): nothing to evaluate"),
])
def test_train_cli_refuses_a_split_without_boxes(tmp_path, boxless_data_dir, capsys, dataset,
                                                 message):
  """A dataset without boxes trained silently to AP=-1."""
  workdir = tmp_path / "run"
  assert cli.main(_args(workdir, boxless_data_dir, f"--config.dataset={dataset}")) == 1
  err = capsys.readouterr().err
  assert re.search(message, err) and len(err.strip().splitlines()) == 1, err
  assert not workdir.exists()


def test_train_cli_no_progress_silences_tfds_bars_too(tmp_path, monkeypatch):
  """TFDS's tqdm bars (building `shapes` on first use) showed despite --no-progress."""
  from tensorflow_datasets.core.utils import tqdm_utils
  from jaxdet.train import loop
  monkeypatch.setattr(tqdm_utils, "_active", True)  # restored after the test
  seen = []
  monkeypatch.setattr(loop, "train_and_evaluate",
                      lambda *a, **k: seen.append((tqdm_utils._active, k["progress"])) or {})
  args = ["train", "--config", CONFIG, "--workdir", str(tmp_path)]
  assert cli.main(args) == 0 and cli.main(args + ["--no-progress"]) == 0
  assert seen == [(True, True), (False, False)]


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
