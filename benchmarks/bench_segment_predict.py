"""Segmentation `predict` beyond the model: the bilinear resize of the logits back to a photo that
is not S x S, and the argmax, on CPU.

A tiny FCN-ResNet test model (`fcn.test_config()`, random seeded weights, `--classes` classes,
network input `--image-size` S, letterbox) segments synthetic photos (`--photos`, WIDTHxHEIGHT:
smooth shapes on a gradient, as a photo's large regions). For each photo, medians over
`--repeats` of:
- `predict`: the whole `Segmenter.predict` call (input resize, model, logits resize, argmax);
- `model`: the compiled forward alone on the resized input (the network's own time);
- `beyond`: predict - model (what this benchmark is about);
- `resize+argmax`: the masks from the model's logits alone (the step `predict` does per photo),
  and the same on random-noise logits (every pixel near a class border: the worst case);
- with `--probabilities`: `predict(..., probabilities=True)` (the `[H, W, K]` softmax as well).
Warm-up: one S x S predict (compiles the batch-1 forward), not the photo itself, so that a slow
step is timed `--repeats` times only.

Usage: `python benchmarks/bench_segment_predict.py [--photos 256x256,512x512,6000x4000]
[--image-size 128] [--classes 21] [--repeats 3] [--probabilities]`.
"""

import argparse
import os
import pathlib
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))


def _photo(width, height, seed=0):
  """uint8 `[height, width, 3]`: a gradient with a few large ellipses and rectangles (drawn at
  about 600 px and resized: a photo's smooth regions, cheap at any size)."""
  from PIL import Image, ImageDraw
  rng = np.random.default_rng(seed)
  scale = min(1.0, 600 / max(width, height))
  w, h = max(1, round(width * scale)), max(1, round(height * scale))
  ys, xs = np.mgrid[0:h, 0:w]
  base = np.stack([xs * 255 // max(1, w - 1), ys * 255 // max(1, h - 1),
                   np.full_like(xs, 128)], -1).astype(np.uint8)
  image = Image.fromarray(base)
  draw = ImageDraw.Draw(image)
  for _ in range(6):
    x0, y0 = rng.integers(0, w), rng.integers(0, h)
    x1, y1 = x0 + rng.integers(w // 8 + 1, w // 2 + 2), y0 + rng.integers(h // 8 + 1, h // 2 + 2)
    shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
    shape((x0, y0, x1, y1), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
  return np.asarray(image.resize((width, height), Image.BILINEAR))


def _median_time(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _resized_argmax(segment):
  """The masks step of this checkout's `predict`: `resized_argmax`, or (before it existed) the
  argmax of `resize_logits`, so that the same script times both."""
  fn = getattr(segment, "resized_argmax", None)
  return fn or (lambda logits, size: np.argmax(segment.resize_logits(logits, size), -1))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--photos", default="256x256,512x512,6000x4000",
                      help="comma-separated WIDTHxHEIGHT")
  parser.add_argument("--image-size", type=int, default=128, help="S, the network input side")
  parser.add_argument("--classes", type=int, default=21, help="K, background included")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--probabilities", action="store_true",
                      help="also time predict(..., probabilities=True)")
  args = parser.parse_args(argv)
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

  import jax
  from benchmarks.bench_backbones import _cpu_model
  from jaxdet import predict_inputs
  from jaxdet.inference import segment
  from jaxdet.models import segmentation
  from jaxdet.models.segmentation import fcn
  from jaxdet.train import config as config_lib

  config = config_lib.base_config()
  config.image_size = args.image_size
  config.model = segmentation.default_config("fcn")
  config.model.update(fcn.test_config())
  names = ["background"] + [f"class{i}" for i in range(1, args.classes)]
  segmenter = segment.build_segmenter(config, None, names)
  masks_of = _resized_argmax(segment)
  s = args.image_size
  segmenter.predict(np.zeros((s, s, 3), np.uint8))  # compiles the batch-1 forward

  print(f"machine: {_cpu_model()}, {os.cpu_count()} CPU cores, load average "
        f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())} (1 / 5 / 15 min); jax "
        f"{jax.__version__}; tiny FCN-ResNet, S = {s}, K = {args.classes}, letterbox; "
        f"{args.repeats} repeats (median)")
  print(f"{'photo':>11s} {'predict':>9s} {'model':>9s} {'beyond':>9s} {'resize+argmax':>14s} "
        f"{'(noise logits)':>15s}" + (f" {'+probabilities':>14s}" if args.probabilities else ""))
  for spec in args.photos.split(","):
    width, height = (int(v) for v in spec.lower().split("x"))
    photo = _photo(width, height)
    inputs, scale, _ = predict_inputs.resize_batch([photo], s, "letterbox")
    logits = np.asarray(segmenter._logits_jit(segmenter.variables, inputs))[0]  # pylint: disable=protected-access
    nh = max(1, min(s, round(height * float(scale[0, 1]))))
    nw = max(1, min(s, round(width * float(scale[0, 0]))))
    area = logits[:nh, :nw]
    noise = np.random.default_rng(0).standard_normal(area.shape).astype(np.float32)
    predict_s = _median_time(lambda: segmenter.predict(photo), args.repeats)  # pylint: disable=cell-var-from-loop
    model_s = _median_time(lambda: np.asarray(segmenter._logits_jit(segmenter.variables, inputs)),  # pylint: disable=protected-access,cell-var-from-loop
                           args.repeats)
    masks_s = _median_time(lambda: masks_of(area, (height, width)), args.repeats)  # pylint: disable=cell-var-from-loop
    noise_s = _median_time(lambda: masks_of(noise, (height, width)), args.repeats)  # pylint: disable=cell-var-from-loop
    probs = ""
    if args.probabilities:
      probs_s = _median_time(lambda: segmenter.predict(photo, probabilities=True), args.repeats)  # pylint: disable=cell-var-from-loop
      probs = f" {probs_s:13.3f}s"
    print(f"{spec:>11s} {predict_s:8.3f}s {model_s:8.3f}s {predict_s - model_s:8.3f}s "
          f"{masks_s:13.3f}s {noise_s:14.3f}s{probs}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
