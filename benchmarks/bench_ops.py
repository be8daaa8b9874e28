"""jaxdet.ops vs torchvision.ops, side by side in one process.

Usage:
  python benchmarks/bench_ops.py               # CPU: jax CPU vs torch CPU (torch.set_num_threads)
  python benchmarks/bench_ops.py --device gpu  # jax's default GPU backend vs torch CUDA

Each row times a jitted jaxdet function (block_until_ready) and the torchvision op on the same
inputs: median and min wall time over --repeats calls after warm-up (min is the figure least
disturbed by other processes on a shared machine), and checks that both agree. Ratio = jaxdet / torchvision (< 1 means
jaxdet is faster). Needs the `bench` extra (torch, torchvision).
"""

import argparse
import functools
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxdet import testing


def time_ms(fn, *, repeats: int, warmup: int = 3) -> tuple[float, float]:
  """(median, min) wall ms over `repeats` calls after `warmup` calls."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(1e3 * (time.perf_counter() - start))
  return statistics.median(times), min(times)


# Boxes on a 1000 px image: uniform, and jittered copies of 20 objects (long NMS chains).
random_boxes_xyxy = functools.partial(testing.random_boxes_xyxy, xy_range=(0.0, 1000.0),
                                      wh_range=(10.0, 110.0))
clustered_boxes_xyxy = functools.partial(
    testing.clustered_boxes_xyxy, num_objects=20, center_range=(100.0, 900.0),
    size_range=(30.0, 200.0), jitter=10.0, scale_range=(0.7, 1.3))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
  parser.add_argument("--repeats", type=int, default=30)
  parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
  args = parser.parse_args(argv)
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import torchvision.ops as tvo  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    print(f"error: the benchmark needs the bench extra (torch, torchvision): {e}", file=sys.stderr)
    return 2
  from jaxdet import ops  # pylint: disable=g-import-not-at-top

  if args.device == "gpu":
    if not torch.cuda.is_available() or jax.default_backend() != "gpu":
      print(f"error: --device gpu needs CUDA torch and jax GPU (torch cuda: "
            f"{torch.cuda.is_available()}, jax backend: {jax.default_backend()})", file=sys.stderr)
      return 2
    torch_device = torch.device("cuda")
    sync = torch.cuda.synchronize
    machine = torch.cuda.get_device_name()
  else:
    jax.config.update("jax_platforms", "cpu")
    torch.set_num_threads(args.threads)
    torch_device = torch.device("cpu")
    sync = lambda: None
    machine = (f"CPU x{os.cpu_count()}, torch threads={args.threads}, load average "
               f"{os.getloadavg()[0]:.1f}")
  print(f"# jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__}, "
        f"torchvision {__import__('torchvision').__version__}; {machine}")

  def to_torch(*arrays):
    return [torch.from_numpy(np.ascontiguousarray(a)).to(torch_device) for a in arrays]

  def time_pair(name, jax_fn, jax_args, torch_fn, torch_args, check):
    jax_args = [jax.device_put(a) for a in jax_args]
    jitted = jax.jit(jax_fn)
    jax_out = jax.block_until_ready(jitted(*jax_args))
    with torch.no_grad():
      torch_out = torch_fn(*torch_args)
    agree = check(jax_out, torch_out)

    def run_torch():
      with torch.no_grad():
        torch_fn(*torch_args)
      sync()

    # One after the other, not interleaved: torch's OpenMP workers spin after each op and would
    # steal the cores from an immediately following jax call.
    jax_ms, jax_min = time_ms(lambda: jax.block_until_ready(jitted(*jax_args)),
                              repeats=args.repeats)
    torch_ms, torch_min = time_ms(run_torch, repeats=args.repeats)
    print(f"| {name:<50} | {jax_ms:8.3f} | {torch_ms:8.3f} | {jax_ms / torch_ms:6.3f} | "
          f"{jax_min:8.3f} | {torch_min:8.3f} | {jax_min / torch_min:6.3f} | {agree:<5} |")

  def same_indices(k):
    def check(result, expected):
      expected = expected.cpu().numpy()[:k]
      got = np.asarray(result.indices)[:int(result.num_valid)]
      return str(bool(len(got) == len(expected) and (got == expected).all()))
    return check

  def close(atol):
    def check(got, expected):
      return str(bool(np.allclose(np.asarray(got), expected.cpu().numpy(), atol=atol, rtol=1e-4)))
    return check

  rng = np.random.default_rng(0)
  print("| op | jaxdet median ms | torchvision median ms | ratio | jaxdet min ms | "
        "torchvision min ms | ratio of mins | match |")
  print("|---|---:|---:|---:|---:|---:|---:|---|")
  for layout, make in (("uniform", random_boxes_xyxy), ("clustered", clustered_boxes_xyxy)):
    boxes = make(rng, 5000)
    scores = rng.uniform(0, 1, 5000).astype(np.float32)
    classes = rng.integers(0, 80, 5000).astype(np.int32)
    tb, ts, tc = to_torch(boxes, scores, classes.astype(np.int64))
    time_pair(f"nms 5000 -> 100, IoU 0.5 ({layout})",
              functools.partial(ops.nms, iou_threshold=0.5, max_output_size=100), (boxes, scores),
              lambda: tvo.nms(tb, ts, 0.5), (), same_indices(100))
    time_pair(f"batched_nms 5000 / 80 classes -> 100 ({layout})",
              functools.partial(ops.batched_nms, iou_threshold=0.5, max_output_size=100),
              (boxes, scores, classes), lambda: tvo.batched_nms(tb, ts, tc, 0.5), (),
              same_indices(100))

  boxes1 = random_boxes_xyxy(rng, 1000)
  boxes2 = random_boxes_xyxy(rng, 1000)
  tb1, tb2 = to_torch(boxes1, boxes2)
  time_pair("box_iou 1000 x 1000", ops.box_iou, (boxes1, boxes2),
            tvo.box_iou, (tb1, tb2), close(1e-6))
  time_pair("generalized_box_iou 1000 x 1000", ops.generalized_box_iou, (boxes1, boxes2),
            tvo.generalized_box_iou, (tb1, tb2), close(1e-5))

  roi_align = getattr(ops, "roi_align", None)
  if roi_align is None:
    print("(roi_align: not in jaxdet.ops yet, row skipped)")
  else:
    features = rng.normal(size=(2, 64, 64, 256)).astype(np.float32)  # NHWC, stride 8 of 512 px
    rois = random_boxes_xyxy(rng, (2, 256), xy_range=(0, 400), wh_range=(16, 112))
    batch_index = np.repeat(np.arange(2, dtype=np.float32), 256)[:, None]
    tfeat, trois = to_torch(features.transpose(0, 3, 1, 2),
                            np.concatenate([batch_index, rois.reshape(512, 4)], axis=1))
    params = dict(output_size=(7, 7), spatial_scale=1 / 8, sampling_ratio=2, aligned=True)

    def torch_roi_align():
      out = tvo.roi_align(tfeat, trois, **params)  # [512, C, 7, 7]
      return out.reshape(2, 256, 256, 7, 7).permute(0, 1, 3, 4, 2)

    time_pair("roi_align 512 RoIs 7x7, [2,64,64,256], ratio 2",
              functools.partial(roi_align, **params), (features, rois), torch_roi_align, (),
              close(1e-4))
  return 0


if __name__ == "__main__":
  sys.exit(main())
