"""Training logs: TensorBoard reads the event files, `curves.png`, metrics.jsonl helpers."""

import numpy as np
from PIL import Image

from jaxdet.train import curves
from jaxdet.train import logging as log_lib


def _write_run(workdir, *, tensorboard):
  writer = log_lib.MetricWriter(workdir, tensorboard=tensorboard)
  for step in range(1, 7):
    writer.write(step, "train", {"loss": 2. / step, "box_loss": 1. / step, "cls_loss": 1. / step,
                                 "lr": 1e-3 * step})
    if step % 3 == 0:
      writer.write(step, "eval", {"AP": 0.1 * step, "AP50": 0.15 * step, "AP75": 0.05 * step})
  writer.close()


def test_tensorboard_reads_the_event_files(tmp_path):
  """What `tensorboard --logdir WORKDIR/tensorboard` shows (tensorboard is a dependency)."""
  from tensorboard.backend.event_processing import event_accumulator
  _write_run(tmp_path, tensorboard=True)
  acc = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
  acc.Reload()
  assert {"train/loss", "train/lr", "eval/AP"} <= set(acc.Tags()["scalars"])
  assert [e.step for e in acc.Scalars("eval/AP")] == [3, 6]
  np.testing.assert_allclose([e.value for e in acc.Scalars("train/loss")],
                             [2. / s for s in range(1, 7)], rtol=1e-6)


def test_curves_png(tmp_path):
  assert not curves.write_curves_png(tmp_path)  # no records yet: nothing written
  _write_run(tmp_path, tensorboard=False)
  assert curves.write_curves_png(tmp_path)
  with Image.open(tmp_path / "curves.png") as im:
    assert im.format == "PNG" and im.size[1] > im.size[0] > 300
  assert not list(tmp_path.glob("*.tmp.png"))


def test_drop_records_after_and_has_eval_at(tmp_path):
  _write_run(tmp_path, tensorboard=False)
  assert log_lib.has_eval_at(tmp_path, 6) and not log_lib.has_eval_at(tmp_path, 5)
  log_lib.drop_records_after(tmp_path, 4)
  records = log_lib.read_metrics(tmp_path)
  assert max(r["step"] for r in records) == 4 and not log_lib.has_eval_at(tmp_path, 6)
