"""Exported-detector speed: onnxruntime vs the same model under `jax.jit` vs torchvision's ONNX.

Model: RetinaNet, ResNet-18 FPN (P3-P7, 256 channels, 4-conv heads, 9 anchors), random init, C
classes, square S x S input; post-processing K=100, score 0.05, IoU 0.5, 1000 pre-NMS candidates.

- jaxdet ONNX: `export.export_onnx` (uint8 in, NMS in the graph), onnxruntime CPU.
- JAX jit: `Detector.predict`'s jitted forward + `jaxdet.models.postprocess` (uint8 in), same
  weights.
- peer: torchvision `RetinaNet` with `resnet_fpn_backbone("resnet18")` + `LastLevelP6P7(256, 256)`
  exported with `torch.onnx.export` (its own transform and per-level top-k + batched NMS inside),
  onnxruntime CPU, float input.

Prints medians of latency (batch 1) and throughput (batch 8) and their ratios, and export times.
Usage: `python benchmarks/bench_export.py [--size 320] [--classes 80] [--repeats 10]`.
"""

import argparse
import os
import platform
import statistics
import tempfile
import time

import numpy as np


def _interleaved_medians_ms(fns, *, repeats, warmup=2):
  """Median wall time (ms) of each zero-argument fn; the fns alternate within every repeat so a
  shared machine's varying load hits them alike."""
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[name].append((time.perf_counter() - start) * 1e3)
  return {name: statistics.median(t) for name, t in times.items()}


def _ort_session(path, threads):
  import onnxruntime as ort
  options = ort.SessionOptions()
  options.intra_op_num_threads = threads
  return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _jaxdet_detector(size, classes):
  from jaxdet import models
  from jaxdet.train import config as config_lib
  from jaxdet.train.load import build_detector
  config = config_lib.base_config()
  config.model = models.default_config("retinanet")
  config.model.backbone = "resnet18"
  config.image_size = size
  config.postprocess.score_threshold = 0.05
  config.postprocess.iou_threshold = 0.5
  config.postprocess.max_detections = 100
  config.postprocess.pre_nms_top_k = 1000
  return build_detector(config, None, [f"class{i}" for i in range(classes)])


def _torchvision_onnx(path, size, classes, batch):
  """Exports torchvision's RetinaNet ResNet-18 FPN for `batch` images; returns export seconds."""
  import torch
  from torchvision.models.detection import RetinaNet
  from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
  from torchvision.ops.feature_pyramid_network import LastLevelP6P7
  torch.manual_seed(0)
  backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5,
                                 returned_layers=[2, 3, 4],
                                 extra_blocks=LastLevelP6P7(256, 256))
  model = RetinaNet(backbone, num_classes=classes, min_size=size, max_size=size,
                    score_thresh=0.05, nms_thresh=0.5, detections_per_img=100,
                    topk_candidates=1000).eval()
  images = [torch.rand(3, size, size) for _ in range(batch)]
  start = time.perf_counter()
  torch.onnx.export(model, (images,), path, opset_version=17, dynamo=False,
                    input_names=[f"image{i}" for i in range(batch)])
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--size", type=int, default=320)
  parser.add_argument("--classes", type=int, default=80)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
  args = parser.parse_args()

  import jax

  import export
  s, b8 = args.size, 8
  print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"jax {jax.__version__} ({jax.default_backend()}); RetinaNet ResNet-18 FPN, {s}x{s}, "
        f"{args.classes} classes; medians of {args.repeats}")
  detector = _jaxdet_detector(s, args.classes)
  rng = np.random.default_rng(0)
  x1 = rng.integers(0, 256, (1, s, s, 3), np.uint8)
  x8 = rng.integers(0, 256, (b8, s, s, 3), np.uint8)

  with tempfile.TemporaryDirectory() as tmp:
    ours = os.path.join(tmp, "jaxdet.onnx")
    start = time.perf_counter()
    export.export_onnx(detector, ours)
    ours_export_s = time.perf_counter() - start
    session = _ort_session(ours, args.threads)
    # The same weights under jax.jit: Detector.predict's jitted forward + postprocess.
    predict = detector._predict_jit  # pylint: disable=protected-access
    fns = {}
    for n, x in ((1, x1), (b8, x8)):
      fns[("ours", n)] = lambda x=x: session.run(None, {"images": x})
      fns[("jax", n)] = lambda x=x: jax.block_until_ready(predict(detector.variables, x))

    tv_export_s = None
    try:
      import torch
      torch.set_num_threads(args.threads)
      for n in (1, b8):
        path = os.path.join(tmp, f"tv{n}.onnx")
        seconds = _torchvision_onnx(path, s, args.classes, n)
        tv_export_s = seconds if n == 1 else tv_export_s
        tv_session = _ort_session(path, args.threads)
        feed = {f"image{i}": rng.random((3, s, s), dtype=np.float32) for i in range(n)}
        fns[("tv", n)] = lambda f=feed, ts=tv_session: ts.run(None, f)
    except ImportError as e:
      print(f"torchvision peer skipped: {e}")
    load_before = os.getloadavg()[0]
    med = _interleaved_medians_ms(fns, repeats=args.repeats)
    print(f"1-min load average during timing: {load_before:.1f} -> {os.getloadavg()[0]:.1f} "
          f"(a shared machine is noisy above {os.cpu_count()})")
  ort_ms = {n: med[("ours", n)] for n in (1, b8)}
  jax_ms = {n: med[("jax", n)] for n in (1, b8)}
  tv_ms = {n: med[("tv", n)] for n in (1, b8) if ("tv", n) in med}

  print(f"{'':34s}{'batch 1 latency':>18s}{'batch 8 images/s':>18s}")
  rows = [("jaxdet ONNX (onnxruntime)", ort_ms), ("jaxdet jax.jit (XLA CPU)", jax_ms)]
  if tv_ms:
    rows.append(("torchvision ONNX (onnxruntime)", tv_ms))
  for name, ms in rows:
    print(f"{name:34s}{ms[1]:15.1f} ms{b8 * 1e3 / ms[b8]:18.1f}")
  print(f"ratio jax.jit / ONNX latency: {jax_ms[1] / ort_ms[1]:.2f}x; "
        f"throughput ONNX / jax.jit: {jax_ms[b8] / ort_ms[b8]:.2f}x")
  if tv_ms:
    print(f"ratio torchvision-ONNX / jaxdet-ONNX latency: {tv_ms[1] / ort_ms[1]:.2f}x; "
          f"throughput jaxdet / torchvision: {tv_ms[b8] / ort_ms[b8]:.2f}x")
  print(f"export time: jaxdet {ours_export_s:.1f} s"
        + (f", torchvision (batch 1) {tv_export_s:.1f} s" if tv_export_s else ""))


if __name__ == "__main__":
  main()
