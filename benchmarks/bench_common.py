"""Shared pieces of the detector-vs-torchvision benchmarks (`bench_ssd.py`, `bench_faster_rcnn.py`):
their command line and driver, latency rows, timed training steps, and the training comparison
with each side in its own process (so that one side's compiled code, threads and memory do not
slow the other)."""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def parser(doc, *, batch):
  """The shared flags: `--part infer|train|all`, `--repeats`, `--steps`, `--batch` (training) and
  the internal `--side jax|torch` (one training side, run by `compare_training`)."""
  p = argparse.ArgumentParser(description=doc.splitlines()[0])
  p.add_argument("--part", choices=["infer", "train", "all"], default="all")
  p.add_argument("--repeats", type=int, default=5, help="inference repeats (medians)")
  p.add_argument("--steps", type=int, default=2, help="timed training steps after the first")
  p.add_argument("--batch", type=int, default=batch, help="training batch")
  p.add_argument("--side", choices=["jax", "torch"], help=argparse.SUPPRESS)
  return p


def run(args, script, *, infer, train_jax, train_torch, size):
  """A benchmark's driver. With `--side`: one training side, its result dict printed as JSON.
  Otherwise: the machine and load average, then `infer(args)` and the training comparison as
  `--part` says (the children get this process's own flags)."""
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  if args.side:
    print(json.dumps((train_jax if args.side == "jax" else train_torch)(args)))
    return
  from bench_backbones import _cpu_model  # pylint: disable=import-outside-toplevel
  print(f"machine: {_cpu_model()}, {os.cpu_count()} CPU cores, load average "
        f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1 / 5 / 15 min)")
  if args.part in ("infer", "all"):
    infer(args)
  if args.part in ("train", "all"):
    compare_training(script, sys.argv[1:], batch=args.batch, size=size, steps=args.steps)


def jaxdet_latency_fns(detector, images, folder):
  """The two jaxdet inference paths, as zero-argument fns for `_interleaved_medians_ms`.

  Args:
    detector: a `jaxdet.inference.load.Detector`.
    images: uint8 `[N, S, S, 3]`.
    folder: where the ONNX file is written.

  Returns:
    `({"jaxdet jax.jit": fn, "jaxdet ONNX, onnxruntime": fn}, ONNX export seconds)`: the
    detector's jitted forward + postprocess, and its `export_onnx` graph under onnxruntime (all
    cores, no spinning); each fn returns its output dict (`num_detections` ...).
  """
  import jax  # pylint: disable=import-outside-toplevel
  from bench_export import _ort_session  # pylint: disable=import-outside-toplevel
  from jaxdet import cli  # pylint: disable=import-outside-toplevel
  path = os.path.join(folder, "jaxdet.onnx")
  start = time.perf_counter()
  cli.import_export_package().export_onnx(detector, path)
  export_s = time.perf_counter() - start
  session = _ort_session(path, os.cpu_count() or 1, False)
  names = [o.name for o in session.get_outputs()]
  from jaxdet.data.preprocess import normalize_image  # pylint: disable=import-outside-toplevel
  predict = detector._predict_jit  # pylint: disable=protected-access
  normalized = jax.numpy.asarray(normalize_image(images, detector.preprocess))  # its input
  return {"jaxdet jax.jit": lambda: jax.block_until_ready(predict(detector.variables,
                                                                  normalized)),
          "jaxdet ONNX, onnxruntime": lambda: dict(zip(names, session.run(
              None, {"images": images})))}, export_s


def print_latencies(medians_ms, *, reference):
  """One row per entry of `{name: median ms}`, with its ratio to the `reference` entry."""
  for name, ms in medians_ms.items():
    print(f"  {name:30s}{ms:9.0f} ms   {ms / medians_ms[reference]:.2f}x {reference}")


def median_step_s(step, steps):
  """Median wall seconds of `steps` calls of `step()` after a first (compile / warm-up) call;
  `step` must block until its work is done."""
  times = []
  for _ in range(steps + 1):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return statistics.median(times[1:])


def run_side(script, side, flags):
  """Runs `python script --side side *flags` (JAX on CPU) and returns the JSON object that its
  last stdout line holds; exits with the child's stderr tail when it fails."""
  res = subprocess.run([sys.executable, script, "--side", side, *flags], capture_output=True,
                       text=True, check=False, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  if res.returncode:
    raise SystemExit(f"{side} side failed:\n{res.stderr[-3000:]}")
  return json.loads(res.stdout.strip().splitlines()[-1])


def compare_training(script, flags, *, batch, size, steps):
  """Runs the "jax" then the "torch" side of `script` (each returns `step_s`, optionally `loss`
  of its last step and `forward_s` of the forward alone, jax also `compile_s`) and prints
  seconds per step, images/s and the throughput ratio."""
  out = {side: run_side(script, side, flags) for side in ("jax", "torch")}
  jax_s, tv_s = out["jax"]["step_s"], out["torch"]["step_s"]
  print(f"training step, batch {batch} ({size}x{size}, median of {steps} after the first; "
        f"load {os.getloadavg()[0]:.1f}):")

  def extra(side):
    r = out[side]
    return ((f"; loss {r['loss']:.3f}" if "loss" in r else "")
            + (f"; forward alone {r['forward_s']:.2f} s" if "forward_s" in r else ""))

  print(f"  jaxdet jax.jit   {jax_s:7.2f} s/step ({batch / jax_s:.2f} img/s; compile "
        f"{out['jax']['compile_s']:.0f} s{extra('jax')})")
  print(f"  torchvision      {tv_s:7.2f} s/step ({batch / tv_s:.2f} img/s{extra('torch')})")
  print(f"  throughput jaxdet / torchvision: {tv_s / jax_s:.2f}x")
  return out
