"""Faster R-CNN R50-FPN v1: jaxdet vs torchvision `fasterrcnn_resnet50_fpn` on this CPU.

torchvision's model as `fasterrcnn_resnet50_fpn` builds it for training from an ImageNet backbone
(ResNet-50 with FrozenBatchNorm2d, 3 trainable backbone layers, FPN P2-P5 + pool), random weights
(nothing downloaded), 91 classes (90 + background), `min_size = max_size = S` so that both sides
see the same S x S input. Its regressors are scaled down and its class logits spread, as in the
parity test, so that random weights give realistic boxes and some detections above 0.05.
- inference, batch 1, S x S (default 512), detections out (RPN 1000 per level, NMS 0.7, 1000
  proposals; score 0.05, per-class NMS 0.5, 100 detections), all with torchvision's weights
  (converted by `jaxdet.models.from_torchvision` into the config `jaxdet convert torchvision`
  writes): jaxdet `jax.jit` (`Detector.predict`'s jitted forward + postprocess), jaxdet ONNX
  under onnxruntime, torchvision eager `model.eval()`, and torchvision's own ONNX export
  (`torch.onnx.export`, TorchScript exporter) under onnxruntime. `--profile` adds a per-stage
  split of both sides (backbone + FPN, RPN + proposals, RoI head, postprocess) and times the
  training forward (losses, no gradients) alone.
- training step, batch 2 (4 random boxes an image, SGD momentum 0.9, stem and layer1 frozen as
  torchvision's 3 trainable layers): jaxdet `jax.jit` (`value_and_grad` of `faster_rcnn.loss_fn`
  w.r.t. the trainable parameters, sampler key `fold_in(key, step)`, donated state) vs
  torchvision `model.train()` and its losses; each side in its own process, its own random init.

Usage: `python benchmarks/bench_faster_rcnn.py [--part infer|train|all] [--size 512]
[--repeats 5] [--steps 2] [--batch 2] [--profile]`; smoke test: `--size 128 --repeats 1 --steps 1`.
"""

import os
import pathlib
import sys
import tempfile
import time
import warnings

import numpy as np

import bench_common  # same folder (script path)
from bench_export import _interleaved_medians_ms, _ort_session

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # tests.testing_torch

ARCH = "fasterrcnn_resnet50_fpn"
C = 91  # torchvision's num_classes counts the background: jaxdet has C - 1 classes
BOXES = 4  # ground-truth boxes an image in training


def _torch_model(size, *, scaled_heads=True):
  """torchvision's Faster R-CNN v1 (FrozenBatchNorm2d, trainable_layers=3), seeded random; with
  `scaled_heads` (inference) the heads get trained magnitudes so that random weights detect;
  training keeps torchvision's own init (scaled heads give a loss of ~2e4 and a diverging step)."""
  import torch
  from torchvision.models.detection import FasterRCNN
  from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
  from tests import testing_torch
  torch.set_num_threads(os.cpu_count() or 1)
  torch.manual_seed(0)
  backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=3)
  model = FasterRCNN(backbone, num_classes=C, min_size=size, max_size=size)
  return testing_torch.scale_faster_rcnn_heads(model) if scaled_heads else model


def _detector(model, size):
  """jaxdet's Detector holding torchvision `model`'s weights, configured as `jaxdet convert`."""
  from jaxdet import models
  from jaxdet.convert import torchvision_faster_rcnn as det
  from jaxdet.inference.load import build_detector
  config = det.faster_rcnn_config(ARCH, num_classes=C - 1, image_size=size)
  state_dict = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  _, variables = models.from_torchvision(ARCH, state_dict, config=config)
  return build_detector(config, variables, det.class_names(C - 1))


def _torchvision_onnx(model, image, path):
  """Exports torchvision's detector for one [3, S, S] image; returns export seconds."""
  import torch
  start = time.perf_counter()
  with warnings.catch_warnings():  # TracerWarnings on every shape-dependent Python line
    warnings.simplefilter("ignore")
    torch.onnx.export(model, ([image],), path, opset_version=17, dynamo=False,
                      input_names=["image"])
  return time.perf_counter() - start


def infer(args):
  import torch
  s = args.size
  model = _torch_model(s).eval()
  detector = _detector(model, s)
  x = np.random.default_rng(0).integers(0, 256, (1, s, s, 3), np.uint8)
  xt = torch.from_numpy(x[0].transpose(2, 0, 1).copy()).float() / 255
  with tempfile.TemporaryDirectory() as tmp:
    fns, export_s = bench_common.jaxdet_latency_fns(detector, x, tmp)
    counts = {k: int(f()["num_detections"][0]) for k, f in fns.items()}
    fns["torchvision eager"] = lambda: torch.no_grad()(model)([xt])
    counts["torchvision eager"] = len(fns["torchvision eager"]()[0]["scores"])
    tv_path, tv_note = os.path.join(tmp, "tv.onnx"), ""
    try:
      tv_note = f", torchvision's {_torchvision_onnx(model, xt, tv_path):.0f} s"
      tv_session = _ort_session(tv_path, os.cpu_count() or 1, False)
      feed = {tv_session.get_inputs()[0].name: xt.numpy()}
      fns["torchvision ONNX, onnxruntime"] = lambda: tv_session.run(None, feed)
      counts["torchvision ONNX, onnxruntime"] = len(fns["torchvision ONNX, onnxruntime"]()[0])
    except Exception as e:  # pylint: disable=broad-except
      reason = (str(e).strip().splitlines() or [""])[0][:200]
      print(f"torchvision ONNX export or its onnxruntime session failed: "
            f"{type(e).__name__}: {reason}")
    load = os.getloadavg()[0]
    med = _interleaved_medians_ms(fns, repeats=args.repeats)
  print(f"inference, batch 1 ({s}x{s}, medians of {args.repeats}; load {load:.1f} -> "
        f"{os.getloadavg()[0]:.1f}); ONNX export: jaxdet's {export_s:.0f} s{tv_note}")
  bench_common.print_latencies(med, reference="torchvision eager")
  print("  detections (same weights): " + ", ".join(f"{k} {n}" for k, n in counts.items()))
  if args.profile:
    profile(detector, model, x, xt, repeats=args.repeats,
            whole=(med["jaxdet jax.jit"], med["torchvision eager"]))


def _jax_stages(detector, x):
  """Zero-argument fns of jaxdet's inference stages, each jitted on the previous one's output."""
  import jax
  from jaxdet.data import preprocess
  from jaxdet.models.detectors import faster_rcnn
  from jaxdet.models.postprocess import postprocess
  model, variables, s = detector.model, detector.variables, detector.image_size
  size = (s, s)

  def features(v, images):
    images = preprocess.normalize_image(images, preprocess.of_model(detector.config.model))
    return model.apply(v, images, train=False, method="features")

  def rpn(m, feats):  # FasterRCNN.__call__'s inference RPN
    cfg = m.config
    objectness, deltas, anchors, level_sizes = m.rpn(feats, size)
    return faster_rcnn.rpn_proposals(
        objectness, deltas, anchors, level_sizes=level_sizes, image_size=size,
        pre_nms_top_n=cfg.rpn_pre_nms_top_n_test, post_nms_top_n=cfg.rpn_post_nms_top_n_test,
        nms_threshold=cfg.rpn_nms_threshold)[:2]

  def roi_head(m, feats, proposals):
    return m.roi_head(m.pool(feats, proposals, size), train=False)

  def post(proposals, mask, class_logits, box_deltas):
    preds = {"proposals": proposals, "proposal_mask": mask.astype("float32"),
             "class_logits": class_logits, "box_deltas": box_deltas}
    boxes, scores = faster_rcnn.decode(preds, image_size=s)
    return postprocess(boxes, scores, **detector.postprocess_args())

  stages = {
      "backbone + FPN": jax.jit(features),
      "RPN + proposals": jax.jit(lambda v, f: model.apply(v, f, method=rpn)),
      "RoI head": jax.jit(lambda v, f, p: model.apply(v, f, p, method=roi_head)),
      "postprocess": jax.jit(post)}
  feats = stages["backbone + FPN"](variables, x)
  proposals, mask = stages["RPN + proposals"](variables, feats)
  heads = stages["RoI head"](variables, feats, proposals)
  block = jax.block_until_ready
  return {
      "backbone + FPN": lambda: block(stages["backbone + FPN"](variables, x)),
      "RPN + proposals": lambda: block(stages["RPN + proposals"](variables, feats)),
      "RoI head": lambda: block(stages["RoI head"](variables, feats, proposals)),
      "postprocess": lambda: block(stages["postprocess"](proposals, mask, *heads))}


def _torch_stages(model, xt):
  """Zero-argument fns of torchvision's inference stages, on the previous one's outputs."""
  import torch
  rh = model.roi_heads

  def features():
    images, _ = model.transform([xt])
    return images, model.backbone(images.tensors)

  def heads(feats, proposals, sizes):
    return rh.box_predictor(rh.box_head(rh.box_roi_pool(feats, proposals, sizes)))

  def post(images, class_logits, box_deltas, proposals):
    boxes, scores, labels = rh.postprocess_detections(class_logits, box_deltas, proposals,
                                                      images.image_sizes)
    result = [{"boxes": boxes[0], "scores": scores[0], "labels": labels[0]}]
    return model.transform.postprocess(result, images.image_sizes, [xt.shape[1:]])

  with torch.no_grad():
    images, feats = features()
    proposals, _ = model.rpn(images, feats)
    logits, deltas = heads(feats, proposals, images.image_sizes)
  no_grad = torch.no_grad()
  return {"backbone + FPN": no_grad(features),
          "RPN + proposals": no_grad(lambda: model.rpn(images, feats)),
          "RoI head": no_grad(lambda: heads(feats, proposals, images.image_sizes)),
          "postprocess": no_grad(lambda: post(images, logits, deltas, proposals))}


def profile(detector, model, x, xt, *, repeats, whole):
  """Prints the per-stage medians of both sides (each stage jitted alone on the jaxdet side), their
  sums and the `whole` (jaxdet, torchvision) end-to-end medians."""
  jx, tv = _jax_stages(detector, x), _torch_stages(model, xt)
  med = _interleaved_medians_ms({**{("jax", k): f for k, f in jx.items()},
                                 **{("tv", k): f for k, f in tv.items()}}, repeats=repeats)
  print(f"  per stage (medians of {repeats}; transform/normalization in the first):")
  print(f"    {'stage':18s}{'jaxdet jit':>12s}{'torchvision':>14s}{'ratio':>8s}")
  rows = [(k, med[("jax", k)], med[("tv", k)]) for k in jx]
  rows += [("sum of stages", sum(r[1] for r in rows), sum(r[2] for r in rows)),
           ("end to end", *whole)]
  for name, ms_jax, ms_tv in rows:
    print(f"    {name:18s}{ms_jax:9.0f} ms{ms_tv:11.0f} ms{ms_jax / ms_tv:7.2f}x")


def _targets(batch, size):
  from jaxdet import testing
  rng = np.random.default_rng(0)
  boxes = testing.random_boxes_xyxy(rng, (batch, BOXES), xy_range=(0, size * 0.7),
                                    wh_range=(size * 0.05, size * 0.3), clip=size - 1)
  return boxes, rng.integers(0, C - 1, (batch, BOXES))


def train_jax(args):
  import jax
  import jax.numpy as jnp
  import optax
  from flax import traverse_util
  from jaxdet import models
  from jaxdet.convert import torchvision_faster_rcnn as det
  from jaxdet.models.detectors import faster_rcnn
  from jaxdet.train import optimizers
  s = args.size
  config = det.faster_rcnn_config(ARCH, num_classes=C - 1, image_size=s)
  model = models.build(config.model, num_classes=C - 1)
  boxes, classes = _targets(args.batch, s)
  targets = {"boxes": jnp.asarray(boxes), "classes": jnp.asarray(classes, jnp.int32),
             "box_mask": jnp.ones(boxes.shape[:2], bool)}
  images = jnp.asarray(np.random.default_rng(1).normal(size=(args.batch, s, s, 3)), jnp.float32)
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(images[:1])
  # Gradients of the trainable parameters only, as torch's requires_grad=False: the trainer's
  # freeze regexes (stem, layer1; FrozenBatchNorm scale and bias).
  regex = "|".join(f"(?:{r})" for r in (config.optimizer.freeze_regex,
                                        *models.frozen_param_patterns(config.model)) if r)
  labels = traverse_util.flatten_dict(
      optimizers.freeze_labels(variables["params"], regex=regex), sep="/")
  flat = traverse_util.flatten_dict(variables["params"], sep="/")
  frozen = {k: v for k, v in flat.items() if labels[k] == "frozen"}
  trainable = {k: v for k, v in flat.items() if labels[k] != "frozen"}
  batch_stats = variables.get("batch_stats", {})
  tx = optax.sgd(1e-3, momentum=0.9)
  key = jax.random.key(0)

  def loss(trainable, frozen, batch_stats, images, targets, step):
    params = traverse_util.unflatten_dict({**frozen, **trainable}, sep="/")
    preds, _ = model.apply({"params": params, "batch_stats": batch_stats}, images, train=True,
                           targets=targets, mutable=["batch_stats"],
                           rngs={"sampler": jax.random.fold_in(key, step)})
    return faster_rcnn.loss_fn(preds, targets, config=config.model)[0]

  def step(state, *inputs):  # inputs are arguments, not constants XLA would fold
    trainable, opt_state, n = state
    value, grads = jax.value_and_grad(loss)(trainable, *inputs, n)
    updates, opt_state = tx.update(grads, opt_state, trainable)
    return (optax.apply_updates(trainable, updates), opt_state, n + 1), value

  state = (trainable, tx.init(trainable), jnp.int32(0))
  inputs = (frozen, batch_stats, images, targets)
  start = time.perf_counter()
  step = jax.jit(step, donate_argnums=0).lower(state, *inputs).compile()
  compile_s = time.perf_counter() - start

  def run():
    nonlocal state, value
    state, value = step(state, *inputs)
    value.block_until_ready()

  value = None
  out = {"step_s": bench_common.median_step_s(run, args.steps), "compile_s": compile_s,
         "loss": float(value)}
  if args.profile:  # the forward alone (loss, no gradients): the rest is backward + update
    forward = jax.jit(loss)
    out["forward_s"] = bench_common.median_step_s(
        lambda: forward(state[0], *inputs, state[2]).block_until_ready(), args.steps)
  return out


def train_torch(args):
  import torch
  model = _torch_model(args.size, scaled_heads=False).train()
  opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3,
                        momentum=0.9)
  boxes, classes = _targets(args.batch, args.size)
  rng = np.random.default_rng(1)
  images = [torch.tensor(rng.uniform(size=(3, args.size, args.size)), dtype=torch.float32)
            for _ in range(args.batch)]
  targets = [{"boxes": torch.from_numpy(b), "labels": torch.from_numpy(c + 1)}
             for b, c in zip(boxes, classes)]

  def run():
    nonlocal loss
    loss = sum(model(images, targets).values())
    opt.zero_grad()
    loss.backward()
    opt.step()

  loss = None
  out = {"step_s": bench_common.median_step_s(run, args.steps), "loss": float(loss)}
  if args.profile:
    out["forward_s"] = bench_common.median_step_s(
        torch.no_grad()(lambda: model(images, targets)), args.steps)
  return out


def main():
  p = bench_common.parser(__doc__, batch=2)
  p.add_argument("--size", type=int, default=512, help="square input S (both sides)")
  p.add_argument("--profile", action="store_true",
                 help="per-stage inference split of both sides, and training's forward time")
  args = p.parse_args()
  bench_common.run(args, __file__, infer=infer, train_jax=train_jax, train_torch=train_torch,
                   size=args.size)


if __name__ == "__main__":
  main()
