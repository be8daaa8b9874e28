"""Darknet YOLO inference latency: jaxdet (jax.jit, onnxruntime) against OpenCV DNN.

The same random darknet weights (80 classes, `jaxdet.testing.random_darknet_weights`) for each
cfg, batch 1 at S px (default 416), the network and box decoding only (no NMS on any side):
- OpenCV: `cv2.dnn.readNetFromDarknet(cfg, weights)`, `net.forward(yolo outputs)` on a float blob;
- jaxdet jit: `jax.jit(jaxdet.load(DIR).forward)` on uint8 images (normalisation included);
- jaxdet ONNX: `export_onnx(..., include_nms=False)` run by onnxruntime (CPU).
Prints median latencies (interleaved repeats, as bench_export.py) and the ratios to OpenCV.

Usage: `python benchmarks/bench_darknet.py [--cfgs yolov4-tiny,yolov3] [--size 416] [--repeats 10]
[--spinning]`.
"""

import argparse
import os
import platform
import tempfile

import numpy as np

from bench_export import _interleaved_medians_ms, _ort_session


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cfgs", default="yolov4-tiny,yolov3")
  parser.add_argument("--size", type=int, default=416)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--threads", type=int, default=os.cpu_count())
  parser.add_argument("--spinning", action="store_true",
                      help="let onnxruntime's threads busy-wait (best on an otherwise idle machine)")
  args = parser.parse_args()
  import cv2
  import jax
  import jaxdet
  from jaxdet import cli, testing
  from jaxdet.convert import darknet
  from jaxdet.models import darknet_cfg as dc
  jaxdet_export = cli.import_export_package()
  cv2.setNumThreads(args.threads)
  print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, S={args.size}, "
        f"batch 1, median of {args.repeats}, onnxruntime spinning {args.spinning}")
  print(f"{'cfg':<12} {'OpenCV ms':>10} {'jit ms':>10} {'ORT ms':>10} {'jit/cv':>7} {'ORT/cv':>7}")
  with tempfile.TemporaryDirectory() as tmp:
    for name in args.cfgs.split(","):
      text = dc.to_text(dc.parse_cfg(dc.builtin_text(name)), image_size=args.size)
      cfg, weights = os.path.join(tmp, f"{name}.cfg"), os.path.join(tmp, f"{name}.weights")
      open(cfg, "w").write(text)
      open(weights, "wb").write(testing.random_darknet_weights(np.random.default_rng(0),
                                                                dc.plan_text(text)))
      out = os.path.join(tmp, name)
      darknet.convert_file(cfg, weights, out)
      det = jaxdet.load(out)
      images = np.random.default_rng(1).integers(0, 256, (1, args.size, args.size, 3), np.uint8)
      net = cv2.dnn.readNetFromDarknet(cfg, weights)
      names = net.getUnconnectedOutLayersNames()
      blob = np.ascontiguousarray(images.transpose(0, 3, 1, 2), np.float32) / 255.0

      def opencv():
        net.setInput(blob)
        net.forward(names)
      forward = jax.jit(det.forward)
      onnx_path = os.path.join(tmp, f"{name}.onnx")
      jaxdet_export.export_onnx(det, onnx_path, include_nms=False)
      session = _ort_session(onnx_path, args.threads, spinning=args.spinning)
      feed = {session.get_inputs()[0].name: images}
      ms = _interleaved_medians_ms(
          {"cv": opencv, "jit": lambda: jax.block_until_ready(forward(images)),
           "ort": lambda: session.run(None, feed)}, repeats=args.repeats)
      print(f"{name:<12} {ms['cv']:>10.1f} {ms['jit']:>10.1f} {ms['ort']:>10.1f} "
            f"{ms['jit'] / ms['cv']:>7.2f} {ms['ort'] / ms['cv']:>7.2f}")


if __name__ == "__main__":
  main()
