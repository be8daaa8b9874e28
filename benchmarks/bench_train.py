"""Training throughput: jaxdet RetinaNet-ResNet-18-FPN vs torchvision RetinaNet (same backbone).

Both sides train at the same input size, batch, classes and number of ground-truth boxes, with SGD
(momentum 0.9) and trainable BatchNorm. Each side runs in its own subprocess (so peak RSS is its
own); with `--rounds R` the two sides alternate R times (jax, torch, jax, torch, ...) so that a
slow spell of a shared machine hits both. The parent prints images/s (median over all timed
steps of all rounds, after compilation / warm-up), compile time, peak RSS and the ratio.

  python benchmarks/bench_train.py [--size 512 --batch 8 --steps 3 --rounds 2 --boxes 8]
  python benchmarks/bench_train.py --yolo   # also the CPU demo model (YOLO nano, 256, batch 16)
  python benchmarks/bench_train.py --device gpu   # jax on its GPU backend vs torch CUDA
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

from jaxdet import testing


def _boxes(rng, batch, num_boxes, size, classes):
  boxes = testing.random_boxes_xyxy(rng, (batch, num_boxes), xy_range=(0, size * 0.7),
                                    wh_range=(size * 0.05, size * 0.3), clip=size - 1)
  return boxes, rng.integers(0, classes, (batch, num_boxes)).astype(np.int64)


def _peak_rss_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_jax(args, model_name):
  import jax
  import jax.numpy as jnp
  import optax

  from jaxdet import models

  cfg = models.default_config(model_name)
  if model_name == "retinanet":
    cfg.backbone = "resnet18"
  rng = np.random.default_rng(0)
  boxes, classes = _boxes(rng, args.batch, args.boxes, args.size, args.classes)
  images = rng.normal(size=(args.batch, args.size, args.size, 3))
  batch = {"image": jnp.asarray(images, jnp.float32),
           "boxes": jnp.asarray(boxes), "classes": jnp.asarray(classes, jnp.int32),
           "box_mask": jnp.ones(boxes.shape[:2], bool)}
  model = models.build(cfg, num_classes=args.classes)
  detector = models.get_detector(model_name)
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(batch["image"][:1])
  tx = optax.sgd(0.01, momentum=0.9)
  state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))

  def step(state, batch):
    params, stats, opt_state = state

    def loss_of(p):
      preds, upd = model.apply({"params": p, "batch_stats": stats}, batch["image"], train=True,
                               mutable=["batch_stats"])
      return detector.loss_fn(preds, batch, config=cfg)[0], upd["batch_stats"]

    (loss, stats), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), stats, opt_state), loss

  step = jax.jit(step, donate_argnums=0)
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  flops = compiled.cost_analysis().get("flops", float("nan"))
  times = []
  for _ in range(args.steps + 1):
    t0 = time.perf_counter()
    state, loss = compiled(state, batch)
    loss.block_until_ready()
    times.append(time.perf_counter() - t0)
  med = statistics.median(times[1:])
  return {"images_per_s": args.batch / med, "step_s": med, "step_times": times[1:],
          "compile_s": compile_s,
          "first_step_s": times[0], "gflops_per_step": flops / 1e9, "loss": float(loss),
          "peak_rss_mb": _peak_rss_mb(), "device": str(jax.devices()[0])}


def run_torch(args):
  import torch
  from torchvision.models.detection import RetinaNet
  from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
  from torchvision.ops.feature_pyramid_network import LastLevelP6P7

  torch.set_num_threads(2)
  torch.manual_seed(0)
  device = torch.device("cuda" if args.device == "gpu" else "cpu")
  sync = torch.cuda.synchronize if args.device == "gpu" else lambda: None
  # Trainable BatchNorm (torchvision defaults to FrozenBatchNorm2d) so both sides do the same work.
  backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5,
                                 returned_layers=[2, 3, 4], norm_layer=torch.nn.BatchNorm2d,
                                 extra_blocks=LastLevelP6P7(256, 256))
  model = RetinaNet(backbone, num_classes=args.classes, min_size=args.size, max_size=args.size)
  model.to(device).train()
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
  rng = np.random.default_rng(0)
  boxes, classes = _boxes(rng, args.batch, args.boxes, args.size, args.classes)
  images = [torch.tensor(rng.uniform(size=(3, args.size, args.size)), dtype=torch.float32,
                         device=device) for _ in range(args.batch)]
  targets = [{"boxes": torch.tensor(b, device=device), "labels": torch.tensor(c, device=device)}
             for b, c in zip(boxes, classes)]
  times = []
  for _ in range(args.steps + 1):
    t0 = time.perf_counter()
    loss_dict = model(images, targets)
    loss = sum(loss_dict.values())
    opt.zero_grad()
    loss.backward()
    opt.step()
    sync()
    times.append(time.perf_counter() - t0)
  med = statistics.median(times[1:])
  return {"images_per_s": args.batch / med, "step_s": med, "step_times": times[1:],
          "first_step_s": times[0],
          "loss": float(loss), "peak_rss_mb": _peak_rss_mb(),
          "versions": f"torch {torch.__version__}, {device}"}


def _child(args, side):
  cmd = [sys.executable, __file__, "--side", side, "--size", str(args.size), "--batch",
         str(args.batch), "--steps", str(args.steps), "--boxes", str(args.boxes), "--classes",
         str(args.classes), "--device", args.device]
  # Each side on the requested platform only (jax would otherwise pick a GPU by itself).
  env = dict(os.environ, JAX_PLATFORMS="cuda" if args.device == "gpu" else "cpu")
  out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
  if out.returncode != 0:
    raise SystemExit(f"{side} side failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def _pool(runs, batch):
  """One result from several rounds: median step time over all their timed steps."""
  step = statistics.median(t for r in runs for t in r["step_times"])
  return {**runs[0], "step_s": step, "images_per_s": batch / step,
          "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def _rounds(runs):
  return " / ".join(f"{r['step_s']:.2f}" for r in runs)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--size", type=int, default=512)
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--steps", type=int, default=3, help="timed steps after the first one")
  p.add_argument("--rounds", type=int, default=2, help="alternations of the two sides")
  p.add_argument("--boxes", type=int, default=8, help="ground-truth boxes per image")
  p.add_argument("--classes", type=int, default=20)
  p.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                 help="gpu: jax's CUDA backend vs torch CUDA")
  p.add_argument("--yolo", action="store_true", help="also time the YOLO demo model (256, b16)")
  p.add_argument("--side", choices=["jax", "torch", "yolo"], help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.side:
    result = run_torch(args) if args.side == "torch" else run_jax(
        args, "yolo" if args.side == "yolo" else "retinanet")
    print(json.dumps(result))
    return
  print(f"machine: {os.cpu_count()} CPU cores; RetinaNet-ResNet-18-FPN train step, "
        f"{args.size}x{args.size}, batch {args.batch}, {args.boxes} gt boxes/image, "
        f"{args.classes} classes, SGD momentum")
  jx_runs, tv_runs, tv_error = [], [], None
  for _ in range(args.rounds):
    jx_runs.append(_child(args, "jax"))
    if tv_error is None:  # torchvision missing (no `bench` extra): stop asking for it
      try:
        tv_runs.append(_child(args, "torch"))
      except SystemExit as e:
        tv_error = str(e).splitlines()[0]
  jx = _pool(jx_runs, args.batch)
  print(f"jaxdet      : {jx['images_per_s']:.2f} img/s (step {jx['step_s']:.2f} s, rounds "
        f"{_rounds(jx_runs)}), compile {jx['compile_s']:.1f} s, peak RSS "
        f"{jx['peak_rss_mb']:.0f} MB, {jx['gflops_per_step']:.0f} GFLOP/step (XLA), "
        f"device {jx['device']}")
  if tv_error is not None:
    print(f"torchvision : unavailable ({tv_error})")
  else:
    tv = _pool(tv_runs, args.batch)
    print(f"torchvision : {tv['images_per_s']:.2f} img/s (step {tv['step_s']:.2f} s, rounds "
          f"{_rounds(tv_runs)}), first step {tv['first_step_s']:.1f} s, peak RSS "
          f"{tv['peak_rss_mb']:.0f} MB ({tv['versions']})")
    print(f"ratio jaxdet / torchvision: {jx['images_per_s'] / tv['images_per_s']:.2f}x")
  if args.yolo:
    yargs = argparse.Namespace(**{**vars(args), "size": 256, "batch": 16, "classes": 6})
    y = _child(yargs, "yolo")
    print(f"yolo (demo) : {y['images_per_s']:.2f} img/s at 256x256 batch 16 (step "
          f"{y['step_s']:.2f} s), compile {y['compile_s']:.1f} s, peak RSS "
          f"{y['peak_rss_mb']:.0f} MB, {y['gflops_per_step']:.0f} GFLOP/step")


if __name__ == "__main__":
  main()
