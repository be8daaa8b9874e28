"""Step time of `jaxdet train` with 1 process against 2 processes on the same machine (CPU, gloo).

On one machine this measures the overhead of the multi-process path (coordination, gloo
all-reduce of the gradients, per-step stop agreement), not scaling: both runs share the same
cores. Each run is the real CLI on `shapes/tiny`, a small YOLO; step time = global batch /
the logged `images_per_sec` (median over steps 3.., so compiling is excluded).

  python benchmarks/bench_distributed.py [--steps 12] [--batch 8] [--image-size 64]
"""

import argparse
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _train_args(workdir, data_dir, a):
  return [sys.executable, "-m", "jaxdet", "train", "--config",
          str(ROOT / "experiments" / "shapes_yolo_anchor_free.py"), "--workdir", str(workdir),
          "--no-progress", "--config.dataset=shapes/tiny", f"--config.data_dir={data_dir}",
          f"--config.total_steps={a.steps}", f"--config.batch_size={a.batch}",
          f"--config.image_size={a.image_size}", "--config.model.width=0.0625",
          "--config.eval_every=0", "--config.tensorboard=false", "--config.log_every=1",
          "--config.checkpoint.every=100000", "--config.data_threads=1"]


def _run(num, data_dir, a, tmp):
  workdir = pathlib.Path(tmp) / f"p{num}"
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  procs = []
  for i in range(num):
    flags = [] if num == 1 else ["--coordinator", f"127.0.0.1:{port}", "--num-processes",
                                 str(num), "--process-id", str(i)]
    procs.append(subprocess.Popen(_train_args(workdir, data_dir, a) + flags, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
  t0 = time.perf_counter()
  for p in procs:
    _, err = p.communicate()
    if p.returncode:
      raise SystemExit(f"{num}-process run failed:\n{err[-2000:]}")
  wall = time.perf_counter() - t0
  rates = [json.loads(l)["images_per_sec"] for l in (workdir / "metrics.jsonl").read_text()
           .splitlines() if json.loads(l)["split"] == "train" and json.loads(l)["step"] >= 3]
  steps = sorted(a.batch / r for r in rates)
  return {"processes": num, "median_step_s": statistics.median(steps), "min_step_s": steps[0],
          "wall_s": wall}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=12)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--image-size", type=int, default=64)
  a = parser.parse_args()
  from jaxdet.data import shapes  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = pathlib.Path(tmp) / "tfds"
    shapes.build("tiny", data_dir=str(data_dir))
    for num in (1, 2):
      r = _run(num, data_dir, a, tmp)
      print(f"{num} process(es): median step {r['median_step_s']:.3f} s (min "
            f"{r['min_step_s']:.3f} s), whole run {r['wall_s']:.1f} s", flush=True)


if __name__ == "__main__":
  main()
