"""Exported-detector speed: onnxruntime vs the same model under `jax.jit` vs torchvision's ONNX.

Model: RetinaNet, ResNet-18 FPN (P3-P7, 256 channels, 4-conv heads, 9 anchors), random init, C
classes, square S x S input; post-processing K=100, score 0.05, IoU 0.5, 1000 pre-NMS candidates.

- jaxdet ONNX: `jaxdet_export.export_onnx` (uint8 in, NMS in the graph), onnxruntime CPU.
- JAX jit: `Detector.predict`'s jitted forward + `jaxdet.models.postprocess` (uint8 in), same
  weights.
- peer: torchvision `RetinaNet` with `resnet_fpn_backbone("resnet18")` + `LastLevelP6P7(256, 256)`
  exported with `torch.onnx.export` (its own transform and per-level top-k + batched NMS inside),
  onnxruntime CPU, float input.

Prints medians of latency (batch 1) and throughput (batch 8) and their ratios, and export times.
Usage: `python benchmarks/bench_export.py [--size 320] [--classes 80] [--repeats 10]`;
`--device gpu`: onnxruntime's CUDA provider (onnxruntime-gpu) and jax's GPU backend.
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


PROVIDERS = ["CPUExecutionProvider"]  # --device gpu puts CUDA first


def _ort_session(path, threads, spinning):
  import onnxruntime as ort
  if PROVIDERS[0] == "CUDAExecutionProvider" and hasattr(ort, "preload_dlls"):
    ort.preload_dlls()  # the CUDA/cuDNN libraries of the nvidia-* wheels
  options = ort.SessionOptions()
  options.intra_op_num_threads = threads
  # Spinning worker threads busy-wait for work: good on an idle machine, harmful when other
  # processes share the 2 cores (measured here: 2 spinning threads were slower than 1 thread).
  options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
  session = ort.InferenceSession(path, options, providers=PROVIDERS)
  if session.get_providers()[0] != PROVIDERS[0]:
    raise SystemExit(f"error: onnxruntime has no {PROVIDERS[0]} (got {session.get_providers()})")
  return session


def _jaxdet_detector(size, classes):
  from jaxdet import models
  from jaxdet.train import config as config_lib
  from jaxdet.inference.load import build_detector
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
  parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                      help="onnxruntime intra-op threads (a 1-thread row is added)")
  parser.add_argument("--ort-spinning", action="store_true",
                      help="let onnxruntime's threads spin (off: fairer on a shared machine)")
  parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
  args = parser.parse_args()
  if args.device == "gpu":
    PROVIDERS.insert(0, "CUDAExecutionProvider")
  else:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

  import jax

  from jaxdet import cli
  from jaxdet.data.preprocess import normalize_image
  export = cli.import_export_package()  # jaxdet_export, this checkout's export/ folder
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
    threads = sorted({args.threads, 1}, reverse=True)
    sessions = {t: _ort_session(ours, t, args.ort_spinning) for t in threads}
    # The same weights under jax.jit: Detector.predict's jitted forward + postprocess.
    # (its input: the normalized S x S images, as `Detector.predict` builds them).
    predict = detector._predict_jit  # pylint: disable=protected-access
    normalized = lambda x: jax.numpy.asarray(normalize_image(x, detector.preprocess))
    fns = {}
    for n, x in ((1, x1), (b8, x8)):
      for t, session in sessions.items():
        fns[(f"ours{t}", n)] = lambda x=x, ss=session: ss.run(None, {"images": x})
      fns[("jax", n)] = lambda x=normalized(x): jax.block_until_ready(
          predict(detector.variables, x))

    tv_export_s = None
    try:
      import torch
      torch.set_num_threads(args.threads)
      for n in (1, b8):
        path = os.path.join(tmp, f"tv{n}.onnx")
        seconds = _torchvision_onnx(path, s, args.classes, n)
        tv_export_s = seconds if n == 1 else tv_export_s
        feed = {f"image{i}": rng.random((3, s, s), dtype=np.float32) for i in range(n)}
        for t in threads:
          tv_session = _ort_session(path, t, args.ort_spinning)
          fns[(f"tv{t}", n)] = lambda f=feed, ts=tv_session: ts.run(None, f)
    except ImportError as e:
      print(f"torchvision peer skipped: {e}")
    load_before = os.getloadavg()[0]
    med = _interleaved_medians_ms(fns, repeats=args.repeats)
    print(f"1-min load average during timing: {load_before:.1f} -> {os.getloadavg()[0]:.1f} "
          f"(a shared machine is noisy above {os.cpu_count()})")
  pick = lambda key: {n: med[(key, n)] for n in (1, b8) if (key, n) in med}
  rows = [(f"jaxdet ONNX, onnxruntime {t} thr", pick(f"ours{t}")) for t in threads]
  rows.append((f"jaxdet jax.jit (XLA {jax.default_backend().upper()})", pick("jax")))
  rows += [(f"torchvision ONNX, onnxruntime {t} thr", pick(f"tv{t}")) for t in threads
           if pick(f"tv{t}")]
  print(f"onnxruntime spinning: {'on' if args.ort_spinning else 'off'}")
  print(f"{'':38s}{'batch 1 latency':>18s}{'batch 8 images/s':>18s}")
  for name, ms in rows:
    print(f"{name:38s}{ms[1]:15.1f} ms{b8 * 1e3 / ms[b8]:18.1f}")
  best = min(pick(f"ours{t}")[1] for t in threads)
  best8 = min(pick(f"ours{t}")[b8] for t in threads)
  jax_ms = pick("jax")
  print(f"jax.jit / best jaxdet-ONNX: latency {jax_ms[1] / best:.2f}x, "
        f"batch-8 time {jax_ms[b8] / best8:.2f}x (>1: ONNX faster)")
  if pick(f"tv{threads[-1]}"):
    tv_best = min(pick(f"tv{t}")[1] for t in threads)
    tv_best8 = min(pick(f"tv{t}")[b8] for t in threads)
    print(f"best torchvision-ONNX / best jaxdet-ONNX: latency {tv_best / best:.2f}x, "
          f"batch-8 time {tv_best8 / best8:.2f}x (>1: jaxdet faster)")
  print(f"export time: jaxdet {ours_export_s:.1f} s"
        + (f", torchvision (batch 1) {tv_export_s:.1f} s" if tv_export_s else ""))

if __name__ == "__main__":
  main()
