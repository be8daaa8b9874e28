"""Ctrl-C at any moment of `python -m jaxdet train`: exit code 130, the usual message, and a
workdir that the same command then resumes or restarts (in a subprocess, as a user would)."""

import os
import pathlib
import re
import signal
import subprocess
import sys
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

CONFIG = '''
from jaxdet import models
from jaxdet.train.config import base_config

def get_config():
  c = base_config()
  c.dataset = "shapes/tiny"
  c.data_dir = {data_dir!r}
  c.image_size = 64
  c.batch_size = 4
  c.eval_batch_size = 8
  c.total_steps = 2
  c.eval_every = 2
  c.log_every = 1
  c.tensorboard = False
  c.model = models.default_config("yolo")
  c.model.width = 0.0625
  c.model.depth = 0.33
  return c
'''


def _train(config_path, workdir, *, interrupt_on=None, timeout=600):
  """Runs `python -m jaxdet train`; sends SIGINT when a log line matches `interrupt_on`.

  Returns:
    `(returncode, output, interrupted)`.
  """
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  if interrupt_on is not None:
    env["JAX_LOG_COMPILES"] = "1"  # JAX logs "Compiling jit(...)" as each compile starts.
    # A real XLA compile to interrupt, not a read from the session's compilation cache
    # (tests/conftest.py), which another test may have filled with the same program.
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
  proc = subprocess.Popen(
      [sys.executable, "-m", "jaxdet", "train", "--config", str(config_path), "--workdir",
       str(workdir), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True, env=env, cwd=ROOT)
  lines, sent = [], threading.Event()
  timer = threading.Timer(timeout, proc.kill)
  timer.start()
  try:
    for line in proc.stdout:
      lines.append(line)
      if interrupt_on is not None and not sent.is_set() and re.search(interrupt_on, line):
        proc.send_signal(signal.SIGINT)
        sent.set()
    return proc.wait(), "".join(lines), sent.is_set()
  finally:
    timer.cancel()


@pytest.mark.slow
def test_sigint_during_first_compile_exits_130_then_same_command_completes(tmp_path,
                                                                           tiny_data_dir):
  config_path = tmp_path / "tiny.py"
  config_path.write_text(CONFIG.format(data_dir=tiny_data_dir))
  workdir = tmp_path / "run"
  # The model's initialization (create_train_state's jit) is the first long XLA compile; on
  # main a KeyboardInterrupt raised inside it ended in a segmentation fault (rc -11 / 139).
  rc, out, sent = _train(config_path, workdir, interrupt_on=r"Compiling jit\(<lambda>\)")
  assert sent, f"no compile log line seen:\n{out[-2000:]}"
  assert rc == 130, out[-3000:]
  assert "Traceback" not in out and "Segmentation" not in out
  assert re.search(r"jaxdet train: SIGINT .*run the same command again to (start|resume)", out)

  rc, out, _ = _train(config_path, workdir)
  assert rc == 0, out[-3000:]
  assert "final: AP=" in out
  assert sorted(p.name for p in (workdir / "checkpoints" / "latest").iterdir()) == ["2"]
  assert (workdir / "curves.png").is_file() and (workdir / "eval" / "coco_stats.json").is_file()

  # A finished run says so and how to extend it, and trains nothing.
  rc, out, _ = _train(config_path, workdir)
  assert rc == 0, out[-3000:]
  assert "is finished" in out and "--config.total_steps=N" in out
  assert "resuming" not in out
