"""Data pipeline throughput: images/s of training batches with full augmentation.

Runs the same per-example function (decode + mosaic/mixup/CutMix/flip/scale-jitter/colour +
normalize + pad) under four loaders side by side, in one process, on the `shapes` dataset:
grain threads (jaxdet's default), grain worker processes, tf.data (``numpy_function`` +
``num_parallel_calls``) and, when torch is installed, a torch ``DataLoader`` with workers.
Also times building the `shapes` dataset (default config: 8000/1000/1000 images).

  python benchmarks/bench_data.py [--sizes 256,512] [--batches 12] [--skip-build]
"""

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

from jaxdet.data import augment as augment_lib
from jaxdet.data import pipeline
from jaxdet.data import shapes

BATCH = 32


def _cpu_seconds():
  """User + system CPU time of this process and its finished children."""
  own = resource.getrusage(resource.RUSAGE_SELF)
  kids = resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


LAST_CPU_PER_IMAGE = [None]


def _rate(iterator, batches, batch_size):
  next(iterator)  # warm-up: worker start, first decode
  start, cpu = time.perf_counter(), _cpu_seconds()
  for _ in range(batches):
    next(iterator)
  # CPU time per image is only complete for in-process loaders (threads).
  LAST_CPU_PER_IMAGE[0] = (_cpu_seconds() - cpu) / (batches * batch_size)
  return batches * batch_size / (time.perf_counter() - start)


DATA_DIR = None  # set by main()


def _train_fn(size):
  records = pipeline._Records("shapes", "train", DATA_DIR)  # pylint: disable=protected-access
  return pipeline._TrainFn(records, np.arange(len(records)), seed=0, image_size=size,  # pylint: disable=protected-access
                           max_boxes=64, cfg=augment_lib.FULL_AUGMENT)


def bench_grain(size, batches, **kw):
  it = pipeline.input_pipeline("shapes", "train", batch_size=BATCH, image_size=size, max_boxes=64,
                               train=True, seed=0, augment="full", shard_index=0, shard_count=1,
                               data_dir=DATA_DIR, **kw)
  return _rate(iter(it), batches, BATCH)


def bench_tfdata(size, batches):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  fn = _train_fn(size)
  keys = ("image", "boxes", "classes", "box_mask")

  def py(g):
    ex = fn(int(g))
    return tuple(ex[k] for k in keys)

  def tf_map(g):
    out = tf.numpy_function(py, [g], (tf.float32, tf.float32, tf.int32, tf.bool))
    return dict(zip(keys, out))

  ds = (tf.data.Dataset.range(10**9).map(tf_map, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(BATCH).prefetch(2))
  return _rate(iter(ds.as_numpy_iterator()), batches, BATCH)


def bench_torch(size, batches, workers=2):
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(2)
  fn = _train_fn(size)

  class _DS(torch.utils.data.Dataset):

    def __len__(self):
      return 10**9

    def __getitem__(self, g):
      ex = fn(g)
      return {k: ex[k] for k in ("image", "boxes", "classes", "box_mask")}

  loader = torch.utils.data.DataLoader(_DS(), batch_size=BATCH, num_workers=workers,
                                       prefetch_factor=2, persistent_workers=False)
  return _rate(iter(loader), batches, BATCH)


def bench_build(data_dir):
  """Wall seconds and CPU seconds (this process + its render workers) of a default build."""
  start, cpu = time.perf_counter(), _cpu_seconds()
  shapes.build("default", data_dir=data_dir)
  return time.perf_counter() - start, _cpu_seconds() - cpu


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--sizes", default="256,512")
  parser.add_argument("--batches", type=int, default=12)
  parser.add_argument("--skip-build", action="store_true")
  parser.add_argument("--loaders", default="grain_threads,grain_processes,tf_data,torch")
  args = parser.parse_args()
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  print(f"machine: {os.cpu_count()} CPU cores; batch {BATCH}; full augmentation "
        f"(mosaic 0.5, mixup 0.15, CutMix 0.15, flip, scale jitter, colour)")
  global DATA_DIR
  tmp = None
  if not args.skip_build:
    DATA_DIR = tmp = tempfile.mkdtemp(prefix="bench_shapes_")
    load = os.getloadavg()[0]
    wall, cpu = bench_build(tmp)
    print(f"build shapes (8000/1000/1000 images, 256 px): {wall:.1f} s wall, {cpu:.1f} CPU-s "
          f"(= {cpu / 2:.1f} s on 2 idle cores); 1-min load average before: {load:.1f}")
  try:
    _throughput(args)
  finally:
    if tmp:
      shutil.rmtree(tmp, ignore_errors=True)


def _throughput(args):
  pipeline._Records("shapes", "train", DATA_DIR)  # builds `shapes` if needed  # pylint: disable=protected-access
  loaders = args.loaders.split(",")
  for size in (int(s) for s in args.sizes.split(",")):
    rates = {}
    for name in loaders:
      try:
        if name == "grain_threads":
          rates[name] = bench_grain(size, args.batches, num_threads=2)
          cpu_ms = LAST_CPU_PER_IMAGE[0] * 1e3
          print(f"{size} px grain_threads: {cpu_ms:.1f} CPU-ms/image "
                f"(= {2e3 / cpu_ms:.0f} images/s on 2 idle cores)")
        elif name == "grain_processes":
          rates[name] = bench_grain(size, args.batches, worker_count=2, num_threads=1)
        elif name == "tf_data":
          rates[name] = bench_tfdata(size, args.batches)
        elif name == "torch":
          rates[name] = bench_torch(size, args.batches)
      except ImportError as e:
        print(f"  {name}: skipped ({e})")
    base = rates.get("grain_threads")
    for name, rate in rates.items():
      ratio = f" ({rate / base:.2f}x grain_threads)" if base else ""
      print(f"{size} px {name:>16s}: {rate:7.1f} images/s{ratio}")
    print(f"  (1-min load average: {os.getloadavg()[0]:.1f})")
    sys.stdout.flush()


if __name__ == "__main__":
  main()
