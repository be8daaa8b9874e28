"""COCO bbox evaluation speed: jaxdet vs pycocotools vs faster-coco-eval, JSON files to 12 stats.

Generates a seeded COCO-like set (5000 images, 80 classes, up to 100 detections per image,
~250k detections, ~33k ground truths, 3% crowd), writes it as JSON, runs the three evaluators in
this process, checks that their 12 stats agree and prints times and ratios.

  python benchmarks/bench_eval.py [--images 5000] [--repeats 1]
"""

import argparse
import contextlib
import io
import json
import os
import tempfile
import time

import numpy as np


def synthetic_coco(*, seed: int = 0, num_images: int = 5000, num_classes: int = 80,
                   max_dets: int = 100, crowd_fraction: float = 0.03):
  """Seeded COCO-like ground truth dict and detection list.

  Ground truth: ~6.6 boxes per image, log-uniform sizes (all three COCO area ranges), 3% crowd.
  Detections: jittered copies of the ground truth (some with a wrong class) plus random boxes,
  scores rounded to 3 decimals (ties, as in real result files), at most ``max_dets`` per image.
  """
  rng = np.random.default_rng(seed)
  size = 640.0
  images = [{"id": i + 1, "width": 640, "height": 640, "file_name": f"{i + 1}.jpg"}
            for i in range(num_images)]
  categories = [{"id": c + 1, "name": f"class_{c + 1}"} for c in range(num_classes)]
  anns, dets = [], []
  for i in range(num_images):
    n = rng.poisson(6.6)
    wh = np.exp(rng.uniform(np.log(4), np.log(400), (n, 2)))
    xy = rng.uniform(0, 1, (n, 2)) * (size - wh)
    cls = rng.integers(1, num_classes + 1, n)
    crowd = rng.random(n) < crowd_fraction
    for j in range(n):
      box = [float(v) for v in np.r_[xy[j], wh[j]].round(2)]
      anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(cls[j]),
                   "bbox": box, "area": box[2] * box[3] * rng.uniform(0.6, 1.0),
                   "iscrowd": int(crowd[j])})
    k = min(max_dets, int(rng.integers(0, max_dets + 1)))
    src = rng.integers(0, max(n, 1), k)
    from_gt = (rng.random(k) < 0.5) & (n > 0)
    jit = rng.normal(0, 0.1, (k, 4))
    base_xy = np.where(from_gt[:, None], xy[src % max(n, 1)] if n else 0,
                       rng.uniform(0, 500, (k, 2)))
    base_wh = np.where(from_gt[:, None], wh[src % max(n, 1)] if n else 1,
                       np.exp(rng.uniform(np.log(4), np.log(300), (k, 2))))
    d_xy = base_xy + jit[:, :2] * base_wh
    d_wh = base_wh * np.exp(jit[:, 2:])
    d_cls = np.where(from_gt & (rng.random(k) < 0.9), cls[src % max(n, 1)] if n else 1,
                     rng.integers(1, num_classes + 1, k))
    score = np.where(from_gt, rng.uniform(0.3, 1.0, k), rng.uniform(0.0, 0.6, k)).round(3)
    for j in range(k):
      dets.append({"image_id": i + 1, "category_id": int(d_cls[j]),
                   "bbox": [float(v) for v in np.r_[d_xy[j], d_wh[j]].round(2)],
                   "score": float(score[j])})
  gt = {"images": images, "annotations": anns, "categories": categories}
  return gt, dets


def run_pycocotools(gt_path, dt_path):
  from pycocotools.coco import COCO
  from pycocotools.cocoeval import COCOeval
  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(gt_path)
    ev = COCOeval(gt, gt.loadRes(dt_path), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  return np.asarray(ev.stats)


def run_faster_coco_eval(gt_path, dt_path):
  from faster_coco_eval import COCO, COCOeval_faster
  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(gt_path)
    ev = COCOeval_faster(gt, gt.loadRes(dt_path), "bbox", print_function=lambda *a, **k: None)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  return np.asarray(ev.stats[:12])


def run_jaxdet(gt_path, dt_path):
  from jaxdet.eval.coco import STAT_NAMES, coco_evaluate
  result = coco_evaluate(gt_path, dt_path)
  return np.asarray([result[k] for k in STAT_NAMES])


def _time(fn, *args, repeats):
  """Median wall and CPU (process) seconds over ``repeats`` runs, and the last output."""
  walls, cpus, out = [], [], None
  for _ in range(repeats):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    walls.append(time.perf_counter() - w0)
    cpus.append(time.process_time() - c0)
  return float(np.median(walls)), float(np.median(cpus)), out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=5000)
  parser.add_argument("--repeats", type=int, default=1)
  parser.add_argument("--skip-pycocotools", action="store_true")
  args = parser.parse_args()
  gt, dets = synthetic_coco(num_images=args.images)
  print(f"{len(gt['images'])} images, {len(gt['categories'])} classes, "
        f"{len(gt['annotations'])} ground truths "
        f"({sum(a['iscrowd'] for a in gt['annotations'])} crowd), {len(dets)} detections")
  with tempfile.TemporaryDirectory() as tmp:
    gt_path, dt_path = os.path.join(tmp, "gt.json"), os.path.join(tmp, "dt.json")
    with open(gt_path, "w") as f:
      json.dump(gt, f)
    with open(dt_path, "w") as f:
      json.dump(dets, f)
    runs = {"jaxdet": run_jaxdet, "faster-coco-eval": run_faster_coco_eval}
    if not args.skip_pycocotools:
      runs["pycocotools"] = run_pycocotools
    results = {name: _time(fn, gt_path, dt_path, repeats=args.repeats)
               for name, fn in runs.items()}
  ours_wall, ours_cpu, ours = results["jaxdet"]
  print("times from JSON files to the 12 stats (wall = elapsed, cpu = process CPU time, which "
        "is what a shared machine's load distorts least)")
  for name, (wall, cpu, stats) in results.items():
    diff = float(np.abs(stats - ours).max())
    print(f"{name:>17}: wall {wall:7.3f} s ({wall / ours_wall:5.2f}x jaxdet)  "
          f"cpu {cpu:7.3f} s ({cpu / ours_cpu:5.2f}x jaxdet)  max |stat diff| {diff:.1e}")
    assert diff < 1e-9, f"{name} disagrees with jaxdet: {stats} vs {ours}"
  print("stats (jaxdet):", np.round(ours, 6).tolist())


if __name__ == "__main__":
  main()
