"""SSD300-VGG16: jaxdet vs torchvision `ssd300_vgg16` (random weights, 91 classes) on this CPU.

- inference, batch 1, 300 x 300 uint8 in, detections out (score 0.01, NMS 0.45, top 400 per class,
  200 detections): jaxdet `jax.jit` (`Detector.predict`'s jitted forward + postprocess), jaxdet
  ONNX under onnxruntime, torchvision eager `model.eval()` (its transform and postprocess).
- training step at batch 8 (SGD momentum 0.9, 4 random boxes an image): jaxdet `jax.jit`
  (`ssd.loss_fn`) vs torchvision eager (`model.train()`, its loss); each side in its own process.

Usage: `python benchmarks/bench_ssd.py [--part infer|train|all] [--repeats 5] [--steps 2]`.
"""

import os
import tempfile
import time

import numpy as np

import bench_common  # same folder (script path)
from bench_export import _interleaved_medians_ms

S, C = 300, 91  # torchvision's num_classes counts the background: jaxdet has C - 1 classes


def _detector():
  from jaxdet import models
  from jaxdet.inference.load import build_detector
  from jaxdet.models.detectors import ssd
  from jaxdet.train import config as config_lib
  config = config_lib.base_config()
  config.model = models.default_config("ssd")
  config.image_size = S
  config.postprocess.update(ssd.POSTPROCESS)
  return build_detector(config, None, [f"class{i}" for i in range(C - 1)])


def _torch_model():
  import torch
  import torchvision
  torch.set_num_threads(os.cpu_count() or 1)
  torch.manual_seed(0)
  return torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None,
                                                   num_classes=C)


def infer(args):
  import torch
  detector = _detector()
  x = np.random.default_rng(0).integers(0, 256, (1, S, S, 3), np.uint8)
  model = _torch_model().eval()
  xt = [torch.from_numpy(x[0].transpose(2, 0, 1).copy()).float() / 255]
  with tempfile.TemporaryDirectory() as tmp:
    fns, export_s = bench_common.jaxdet_latency_fns(detector, x, tmp)
    fns["torchvision eager"] = lambda: torch.no_grad()(model)(xt)
    load = os.getloadavg()[0]
    med = _interleaved_medians_ms(fns, repeats=args.repeats)
  print(f"inference, batch 1 ({S}x{S}, medians of {args.repeats}; load {load:.1f} -> "
        f"{os.getloadavg()[0]:.1f}); jaxdet ONNX export {export_s:.0f} s")
  bench_common.print_latencies(med, reference="torchvision eager")


def _boxes(batch):
  rng = np.random.default_rng(0)
  xy = rng.uniform(0, 200, (batch, 4, 2))
  return (np.concatenate([xy, xy + rng.uniform(20, 90, (batch, 4, 2))], -1).astype(np.float32),
          rng.integers(0, C - 1, (batch, 4)))


def train_jax(args):
  import jax
  import jax.numpy as jnp
  import optax
  from jaxdet import models
  from jaxdet.models.detectors import ssd
  cfg = ssd.default_config()
  model = models.build(cfg, num_classes=C - 1)
  boxes, classes = _boxes(args.batch)
  batch = {"boxes": jnp.asarray(boxes), "classes": jnp.asarray(classes, jnp.int32),
           "box_mask": jnp.ones(boxes.shape[:2], bool)}
  images = jnp.asarray(np.random.default_rng(1).normal(size=(args.batch, S, S, 3)), jnp.float32)
  params = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(images[:1])["params"]
  tx = optax.sgd(1e-3, momentum=0.9)

  def step(state, images, batch):
    params, opt_state = state
    loss, grads = jax.value_and_grad(lambda p: ssd.loss_fn(
        model.apply({"params": p}, images, train=True), batch, config=cfg)[0])(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  state = (params, tx.init(params))
  start = time.perf_counter()
  step = jax.jit(step, donate_argnums=0).lower(state, images, batch).compile()
  compile_s = time.perf_counter() - start

  def run():
    nonlocal state
    state, loss = step(state, images, batch)
    loss.block_until_ready()

  return {"step_s": bench_common.median_step_s(run, args.steps), "compile_s": compile_s}


def train_torch(args):
  import torch
  model = _torch_model().train()
  opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
  boxes, classes = _boxes(args.batch)
  rng = np.random.default_rng(1)
  images = [torch.tensor(rng.uniform(size=(3, S, S)), dtype=torch.float32)
            for _ in range(args.batch)]
  targets = [{"boxes": torch.from_numpy(b), "labels": torch.from_numpy(c + 1)}
             for b, c in zip(boxes, classes)]

  def run():
    loss = sum(model(images, targets).values())
    opt.zero_grad()
    loss.backward()
    opt.step()

  return {"step_s": bench_common.median_step_s(run, args.steps)}


def main():
  args = bench_common.parser(__doc__, batch=8).parse_args()
  bench_common.run(args, __file__, infer=infer, train_jax=train_jax, train_torch=train_torch,
                   size=S)


if __name__ == "__main__":
  main()
