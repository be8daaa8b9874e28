"""jaxdet roi_align vs torchvision.ops.roi_align over box sizes and sampling modes, one process.

512 RoIs (2 images x 256) pooled to 7x7 from a [2, 64, 64, 256] map (stride 8 of a 512x512 input),
boxes uniform in position with sides uniform in [lo, hi] input pixels. Prints medians over
interleaved calls (both sides see the same machine load), the ratio jaxdet / torchvision and the
max |difference|. Also times match_boxes and sample_balanced at RetinaNet scale (no peer).

Usage: python benchmarks/bench_roi_align.py [--repeats 15]
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torchvision

from jaxdet import testing
from jaxdet.ops import anchors, matching
from jaxdet.ops.roi_align import roi_align


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=15)
  args = parser.parse_args()
  torch.set_num_threads(2)
  print(f"# jax {jax.__version__}, torchvision {torchvision.__version__}, torch threads 2, "
        f"load average {os.getloadavg()[0]:.1f}")
  rng = np.random.default_rng(0)
  b, h, w, c, k = 2, 64, 64, 256, 256
  features = rng.standard_normal((b, h, w, c)).astype(np.float32)
  features_j = jnp.asarray(features)
  features_t = torch.from_numpy(features.transpose(0, 3, 1, 2).copy())
  print("| box sides (px) | sampling_ratio | jaxdet ms | torchvision ms | ratio | max abs diff |")
  print("|---|---:|---:|---:|---:|---:|")
  # (lo, hi, number of 2600 px boxes replacing the first ones: adaptive bins > 27 samples)
  for lo, hi, huge in [(16, 128, 0), (32, 256, 0), (64, 512, 0), (16, 128, 1), (16, 128, 10)]:
    boxes = testing.random_boxes_xyxy(rng, (b, k), xy_range=(0, 512 - lo), wh_range=(lo, hi),
                                      clip=512)
    boxes.reshape(-1, 4)[:huge] = [-1000, -1000, 1600, 1600]
    boxes_j = jnp.asarray(boxes)
    rois = np.concatenate([np.repeat(np.arange(float(b)), k)[:, None], boxes.reshape(-1, 4)], 1)
    rois_t = torch.from_numpy(rois.astype(np.float32))
    for ratio in ((-1,) if huge else (2, -1)):
      ours = jax.jit(lambda f, x, r=ratio: roi_align(f, x, output_size=7, spatial_scale=1 / 8,
                                                     sampling_ratio=r, aligned=True))
      peer = lambda r=ratio: torchvision.ops.roi_align(features_t, rois_t, (7, 7), 1 / 8, r, True)
      got = np.asarray(ours(features_j, boxes_j)).reshape(b * k, 7, 7, c).transpose(0, 3, 1, 2)
      diff = np.abs(got - peer().numpy()).max()
      t_ours, t_peer = [], []
      for _ in range(args.repeats):
        start = time.perf_counter()
        ours(features_j, boxes_j).block_until_ready()
        t_ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        peer()
        t_peer.append(time.perf_counter() - start)
      t_ours, t_peer = 1e3 * np.median(t_ours), 1e3 * np.median(t_peer)
      label = f"{lo}-{hi}" + (f" + {huge} x 2600" if huge else "")
      print(f"| {label} | {ratio} | {t_ours:.1f} | {t_peer:.1f} | {t_ours / t_peer:.2f} | "
            f"{diff:.1e} |", flush=True)

  anchors_xyxy = jnp.asarray(anchors.retinanet_anchors_xyxy(512))
  gt = jnp.asarray(testing.random_boxes_xyxy(rng, (8, 50), xy_range=(0, 400), wh_range=(10, 200)))
  gt_mask = jnp.asarray(rng.random((8, 50)) < 0.5)
  match = jax.jit(lambda g, m: matching.match_boxes(
      g, m, anchors_xyxy, high_threshold=0.5, low_threshold=0.4, allow_low_quality_matches=True))
  sample = jax.jit(lambda key, m: matching.sample_balanced(key, m, num_samples=256,
                                                            positive_fraction=0.5))
  codes = match(gt, gt_mask).block_until_ready()
  sample(jax.random.key(0), codes)[0].block_until_ready()
  t_match, t_sample = [], []
  for i in range(args.repeats):
    start = time.perf_counter()
    match(gt, gt_mask).block_until_ready()
    t_match.append(time.perf_counter() - start)
    start = time.perf_counter()
    sample(jax.random.key(i), codes)[0].block_until_ready()
    t_sample.append(time.perf_counter() - start)
  print(f"match_boxes [8 x 50 gt] x {anchors_xyxy.shape[0]} anchors: "
        f"{1e3 * np.median(t_match):.1f} ms; sample_balanced 256 per image: "
        f"{1e3 * np.median(t_sample):.1f} ms")


if __name__ == "__main__":
  main()
