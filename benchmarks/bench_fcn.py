"""FCN-ResNet50 inference latency: jaxdet (jit, onnxruntime) against torchvision eager, on CPU.

The same randomized torchvision `fcn_resnet50` weights (21 classes, no aux head) on both sides,
converted by `jaxdet convert torchvision` (a `.safetensors` file) and loaded with `jaxdet.load`.
Each side takes uint8 images `[B, S, S, 3]` and does its normalization:
- jaxdet jit: `Segmenter.forward` (normalize + FCN, logits `[B, S, S, 21]`) under `jax.jit`;
- jaxdet ONNX: the exported graph (normalize + FCN + argmax -> masks) in onnxruntime;
- torchvision: `(x / 255 - mean) / std` then `model(x)["out"]` under `torch.no_grad()`.
Each repeat runs the three in turn (a shared machine's load hits them alike); medians give the
latency and the ratio jaxdet / torchvision (<= 1.0 means jaxdet is at least as fast).

Usage: `python benchmarks/bench_fcn.py [--size 512] [--batch 1] [--repeats 5] [--threads N]`.
"""

import argparse
import os
import pathlib
import statistics
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=512)
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--threads", type=int, default=os.cpu_count(),
                      help="torch and onnxruntime intra-op threads (XLA uses all cores)")
  args = parser.parse_args(argv)

  import jax
  import onnxruntime as ort
  import torch
  import torchvision
  from safetensors.numpy import save_file

  import jaxdet
  from benchmarks.bench_backbones import _cpu_model, _time
  from jaxdet.convert import torchvision as tv_convert
  from jaxdet import cli
  cli.import_export_package()  # registers this checkout's export/ folder as `jaxdet_export`
  import importlib
  seg_export = importlib.import_module("jaxdet_export.segmentation")
  from tests import testing_torch

  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  model = torchvision.models.get_model("fcn_resnet50", weights=None, weights_backbone=None,
                                       num_classes=21).eval()
  testing_torch.randomize_batchnorm(model)
  model.eval()
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (args.batch, args.size, args.size, 3), dtype=np.uint8)
  mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
  std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
  images_nchw = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))

  with tempfile.TemporaryDirectory() as tmp:
    save_file(testing_torch.numpy_state_dict(model), f"{tmp}/fcn.safetensors")
    convert_s = _time(lambda: tv_convert.convert_file(
        "fcn_resnet50", f"{tmp}/fcn.safetensors", f"{tmp}/ckpt", image_size=args.size))
    segmenter = jaxdet.load(f"{tmp}/ckpt")
    export_s = _time(lambda: seg_export.export_segmentation_onnx(segmenter, f"{tmp}/fcn.onnx"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(f"{tmp}/fcn.onnx", options,
                                   providers=["CPUExecutionProvider"])
  forward = jax.jit(segmenter.forward)
  compile_s = _time(lambda: forward(images).block_until_ready())
  input_name = session.get_inputs()[0].name

  def torch_run():
    with torch.no_grad():
      model((images_nchw.float() / 255 - mean) / std)["out"]

  runs = {"jaxdet jit": lambda: forward(images).block_until_ready(),
          "jaxdet onnxruntime": lambda: session.run(None, {input_name: images}),
          "torchvision eager": torch_run}
  for fn in runs.values():
    fn()  # warm-up
  times = {name: [] for name in runs}
  for _ in range(args.repeats):
    for name, fn in runs.items():
      times[name].append(_time(fn))
  ref = statistics.median(times["torchvision eager"])
  print(f"machine: {_cpu_model()}, {os.cpu_count()} CPU cores; jax {jax.__version__}, torch "
        f"{torch.__version__}, onnxruntime {ort.__version__} ({args.threads} threads); "
        f"fcn_resnet50, {args.size} px, batch {args.batch}, {args.repeats} repeats (median)")
  print(f"convert (.safetensors -> checkpoint) {convert_s:.1f} s; ONNX export {export_s:.1f} s; "
        f"jit compile {compile_s:.1f} s")
  for name, ts in times.items():
    t = statistics.median(ts)
    print(f"{name:20s} {1000 * t:9.1f} ms  {t / ref:5.2f}x")
  return 0


if __name__ == "__main__":
  sys.exit(main())
