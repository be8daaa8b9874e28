"""Classifier inference throughput: jaxdet under `jax.jit` vs torchvision in eval mode, on CPU.

Models: ResNet-50, DenseNet-121, VGG-16 and GoogLeNet with the same (randomized torchvision)
weights, converted by `jaxdet.models.from_torchvision`; float32 NHWC (jaxdet) / NCHW (torch)
input at S x S px, batch B. Each repeat runs every model of both sides in turn, so a shared
machine's varying load hits them alike; the medians give images/s and the ratio jaxdet/torch
(>= 1.0 means jaxdet is at least as fast). Also reports the conversion time (state dict ->
variables, and the whole `jaxdet convert torchvision` of a `.safetensors` file) and the first
call (compile) time of jit.

Usage: `python benchmarks/bench_backbones.py [--size 224] [--batch 8] [--repeats 10]
[--threads N] [--archs resnet50,densenet121,vgg16,googlenet]`. A 1-repeat smoke run:
`--repeats 1 --size 64 --batch 2`.
"""

import argparse
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

ARCHS = ("resnet50", "densenet121", "vgg16", "googlenet")


def _cpu_model() -> str:
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _time(fn) -> float:
  start = time.perf_counter()
  fn()
  return time.perf_counter() - start


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--threads", type=int, default=os.cpu_count(),
                      help="torch intra-op threads (XLA uses all cores)")
  parser.add_argument("--archs", default=",".join(ARCHS))
  args = parser.parse_args(argv)

  import jax
  import torch
  import torchvision
  from jaxdet.convert import torchvision as tv_convert
  from tests import testing_torch

  torch.set_num_threads(args.threads)
  archs = args.archs.split(",")
  images = testing_torch.random_images(args.batch, args.size)
  images_nchw = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
  runs, rows = {}, {}
  for arch in archs:
    torch.manual_seed(0)
    kwargs = {"transform_input": True} if arch == "googlenet" else {}
    model = torchvision.models.get_model(arch, weights=None, **kwargs).eval()
    sd = testing_torch.numpy_state_dict(model)
    start = time.perf_counter()
    module, variables = tv_convert.from_torchvision(arch, sd)
    convert_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
      from safetensors.numpy import save_file
      save_file(sd, f"{tmp}/w.safetensors")
      file_s = _time(lambda: tv_convert.convert_file(arch, f"{tmp}/w.safetensors", f"{tmp}/out"))
    forward = jax.jit(lambda v, x, m=module: m.apply(v, x, train=False))
    compile_s = _time(lambda: forward(variables, images).block_until_ready())

    def torch_run(m=model):
      with torch.no_grad():
        m(images_nchw)
    runs[f"{arch}/jaxdet"] = lambda f=forward, v=variables: f(v, images).block_until_ready()
    runs[f"{arch}/torch"] = torch_run
    torch_run()
    rows[arch] = {"convert_s": convert_s, "file_s": file_s, "compile_s": compile_s}

  times = {name: [] for name in runs}
  for _ in range(args.repeats):
    for name, fn in runs.items():
      times[name].append(_time(fn))
  print(f"machine: {_cpu_model()}, {os.cpu_count()} CPU cores; jax {jax.__version__}, torch "
        f"{torch.__version__} ({args.threads} threads); {args.size} px, batch {args.batch}, "
        f"{args.repeats} repeats (median)")
  print(f"{'arch':12s} {'jaxdet img/s':>12s} {'torch img/s':>12s} {'ratio':>6s} "
        f"{'convert s':>9s} {'file->ckpt s':>12s} {'jit compile s':>13s}")
  for arch in archs:
    jx = args.batch / statistics.median(times[f"{arch}/jaxdet"])
    tt = args.batch / statistics.median(times[f"{arch}/torch"])
    r = rows[arch]
    print(f"{arch:12s} {jx:12.1f} {tt:12.1f} {jx / tt:5.2f}x {r['convert_s']:9.2f} "
          f"{r['file_s']:12.2f} {r['compile_s']:13.1f}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
