"""`jaxdet.load(...).predict` on a real photo, beside its reference on the same photo.

Models (random weights; nothing is downloaded):
- `--model retinanet` / `faster_rcnn`: torchvision's `retinanet_resnet50_fpn` /
  `fasterrcnn_resnet50_fpn` at its defaults (min_size 800, max_size 1333), converted with
  `jaxdet convert torchvision`: jaxdet's `predict` (the "rcnn" preprocessing, one program per
  padded size), its ONNX export through `jaxdet_export.Detector`, and torchvision's eager
  `model([image])` (its transform included); every side on all cores.
- `--model demo`: the `make demo` detector (`experiments/shapes_yolo_anchor_free.py`, random
  init): `predict` of a photo letterboxed to 128 px (no reference; the figure to compare across
  jaxdet versions, e.g. run this script from an older checkout).

Each row: the first call (compile included) and the median of `--repeats` calls after it, in ms.
"""

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np

ARCHS = {"retinanet": "retinanet_resnet50_fpn", "faster_rcnn": "fasterrcnn_resnet50_fpn"}


def _photo(name):
  import skimage.data  # pylint: disable=import-outside-toplevel  (the dev extra)
  return {"landscape": skimage.data.coffee, "portrait": lambda: np.ascontiguousarray(
      np.rot90(skimage.data.rocket())), "square": skimage.data.astronaut}[name]()


def _timed(fn, repeats):
  """(first call ms, median ms of `repeats` calls after it)."""
  start = time.perf_counter()
  fn()
  first = (time.perf_counter() - start) * 1e3
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append((time.perf_counter() - start) * 1e3)
  return first, statistics.median(times)


def _torchvision(arch, folder):
  """A random torchvision detector (eval mode) and its converted jaxdet folder."""
  import torch  # pylint: disable=import-outside-toplevel
  import torchvision  # pylint: disable=import-outside-toplevel
  from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
  from jaxdet.convert import torchvision as tv_convert  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  model = torchvision.models.get_model(arch, weights=None, weights_backbone=None).eval()
  weights = folder / "w.safetensors"
  save_file({k: v.detach().numpy() for k, v in model.state_dict().items()}, str(weights))
  tv_convert.convert_file(arch, weights, folder / "out")
  return model, folder / "out"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", choices=sorted(ARCHS) + ["demo"], default="retinanet")
  parser.add_argument("--photo", choices=["landscape", "portrait", "square"],
                      default="landscape")
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  sys.path.insert(0, str(pathlib.Path(__file__).parent))
  from bench_backbones import _cpu_model  # pylint: disable=import-outside-toplevel
  import jaxdet  # pylint: disable=import-outside-toplevel
  photo = _photo(args.photo)
  print(f"machine: {_cpu_model()}, {os.cpu_count()} CPU cores, load average "
        f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())}; {args.model} on a "
        f"{photo.shape[0]}x{photo.shape[1]} photo, medians of {args.repeats} after the first")
  rows = {}
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    if args.model == "demo":
      from jaxdet.inference.load import build_detector  # pylint: disable=import-outside-toplevel
      from jaxdet.train.config import load_config_file  # pylint: disable=import-outside-toplevel
      root = pathlib.Path(__file__).resolve().parents[1]
      config = load_config_file(str(root / "experiments" / "shapes_yolo_anchor_free.py"))
      detector = build_detector(config, None, [f"c{i}" for i in range(6)])
      rows["jaxdet predict"] = _timed(lambda: detector.predict(photo), args.repeats)
    else:
      import torch  # pylint: disable=import-outside-toplevel
      import jaxdet_export  # pylint: disable=import-outside-toplevel
      model, folder = _torchvision(ARCHS[args.model], tmp)
      detector = jaxdet.load(folder)
      tensor = torch.from_numpy(np.ascontiguousarray(photo.transpose(2, 0, 1))).float() / 255
      with torch.no_grad():
        rows["torchvision eager"] = _timed(lambda: model([tensor]), args.repeats)
      rows["jaxdet predict (jax.jit)"] = _timed(lambda: detector.predict(photo), args.repeats)
      start = time.perf_counter()
      jaxdet_export.export_onnx(detector, tmp / "m.onnx")
      print(f"ONNX export: {time.perf_counter() - start:.1f} s")
      served = jaxdet_export.Detector(tmp / "m.onnx")
      rows["jaxdet ONNX, onnxruntime"] = _timed(lambda: served.predict(photo), args.repeats)
  reference = "torchvision eager" if "torchvision eager" in rows else None
  for name, (first, median) in rows.items():
    ratio = f"   {median / rows[reference][1]:.2f}x {reference}" if reference else ""
    print(f"  {name:28s} first {first:8.0f} ms   median {median:8.0f} ms{ratio}")


if __name__ == "__main__":
  main()
