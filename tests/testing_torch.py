"""Shared helpers of the torchvision parity tests (the zoo's standard).

Setup of every parity test: build the torchvision model with `weights=None` (nothing is
downloaded), give its BatchNorm layers realistic random statistics and affine parameters, put it
in `.eval()`, convert its state dict, and run both on the same seeded input.
"""

import jax
import numpy as np
import pytest


def torch_modules():
  """`(torch, torchvision)`, skipping the test when they are not installed."""
  torch = pytest.importorskip("torch")
  torchvision = pytest.importorskip("torchvision")
  # One thread: torch's spinning worker threads run 50x slower on a shared 2-core machine.
  torch.set_num_threads(1)
  return torch, torchvision


def randomize_batchnorm(model, *, image_size=64, batch=4, seed=0, forward=None):
  """Random BatchNorm statistics and (BatchNorm, GroupNorm) affine parameters, in place.

  Running statistics come from one train-mode pass of `forward` (default: the model; a detector
  passes its backbone) over random images with `momentum=None` (a cumulative average: they
  equal that batch's statistics), so activations stay well scaled in eval mode at any depth;
  scale and bias are then drawn from U(0.5, 1.5) and N(0, 0.1) so that a swapped or dropped
  affine parameter shows.
  """
  torch, _ = torch_modules()
  gen = torch.Generator().manual_seed(seed)
  norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
  group_norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
  if not norms and not group_norms:  # e.g. SSD300-VGG16: nothing to randomize, no forward
    return model.eval()
  momenta = [m.momentum for m in norms]
  for m in norms:
    m.reset_running_stats()
    m.momentum = None
  model.train()
  with torch.no_grad():
    (forward or model)(torch.randn(batch, 3, image_size, image_size, generator=gen))
    for m, momentum in zip(norms, momenta):
      m.momentum = momentum
    for m in norms + group_norms:
      m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
      m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
  model.eval()
  return model


def torchvision_model(arch, *, seed=0, image_size=64, **kwargs):
  """torchvision's `arch` with random weights (`weights=None`; detectors also
  `weights_backbone=None`) and randomized normalization layers, in eval mode. `kwargs` go to the
  torchvision builder (e.g. `transform_input=True`)."""
  torch, torchvision = torch_modules()
  torch.manual_seed(seed)
  detector = arch in torchvision.models.list_models(torchvision.models.detection)
  if detector:
    kwargs.setdefault("weights_backbone", None)
  model = torchvision.models.get_model(arch, weights=None, **kwargs)
  forward = model.backbone if detector else None
  return randomize_batchnorm(model, image_size=image_size, seed=seed, forward=forward)


def scale_faster_rcnn_heads(model):
  """A random torchvision Faster R-CNN's heads at trained-model magnitudes, in place.

  Random weights through 50 randomized-BN layers give box deltas far beyond a trained model's
  (see the RetinaNet test): both regressions and the RPN's objectness are scaled by 0.01, and the
  class logits spread by 4 so that scores are well separated (no float32 ties in the ranking).
  """
  import torch  # the caller has a torch model
  with torch.no_grad():
    for layer in (model.rpn.head.bbox_pred, model.roi_heads.box_predictor.bbox_pred,
                  model.rpn.head.cls_logits):
      layer.weight.mul_(0.01)
      layer.bias.mul_(0.01)
    model.roi_heads.box_predictor.cls_score.weight.mul_(4.0)
  return model


def numpy_state_dict(model):
  """The model's `state_dict()` as NumPy arrays."""
  return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def random_images(batch, size, seed=0):
  """Seeded float32 `[batch, size, size, 3]` images (already "normalized": N(0, 1))."""
  return np.random.default_rng(seed).standard_normal((batch, size, size, 3)).astype(np.float32)


def torch_forward(model, images_nhwc):
  """Runs a torch model on NHWC NumPy images (NCHW inside); returns NumPy outputs (a dict of
  NHWC arrays for a model returning a dict of NCHW maps, as torchvision's segmentation models)."""
  torch, _ = torch_modules()
  with torch.no_grad():
    out = model(torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2))))
  if isinstance(out, dict):
    return {k: v.numpy().transpose(0, 2, 3, 1) for k, v in out.items()}
  return out.numpy()


def assert_relative_close(actual, expected, *, rtol=1e-4):
  """max |actual - expected| <= rtol * max |expected| (the zoo's logit parity criterion)."""
  actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
  assert actual.shape == expected.shape, (actual.shape, expected.shape)
  err, scale = np.max(np.abs(actual - expected)), np.max(np.abs(expected))
  assert err <= rtol * scale, f"max |diff| {err:.3g} > {rtol:g} * max |ref| {scale:.3g}"


def assert_classifier_parity(arch, *, image_size=64, batch=2, config=None, **torch_kwargs):
  """Converts a randomized torchvision classifier and checks jaxdet's logits against it.

  Returns:
    `(torch_model, (module, variables))` for further checks.
  """
  from jaxdet.convert import torchvision as tv_convert
  model = torchvision_model(arch, image_size=image_size, **torch_kwargs)
  module, variables = tv_convert.from_torchvision(arch, numpy_state_dict(model), config=config)
  images = random_images(batch, image_size)
  logits = np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, images))
  assert logits.shape == (batch, 1000)
  assert_relative_close(logits, torch_forward(model, images))
  return model, (module, variables)


def assert_same_detections(boxes, scores, classes, ref_boxes, ref_scores, ref_classes, *,
                           box_atol=1e-3, score_atol=1e-5):
  """The zoo's detection parity: same count, boxes within `box_atol` px, scores within
  `score_atol`, same classes, in the same order.

  Order is the reference's except inside a group of detections whose scores agree within
  `score_atol`: there the ranking is decided by float32 rounding (either framework's), so a
  detection may match any unused reference detection of that group. Scores are compared in rank
  order, so a swap between detections of different scores still fails.

  Args:
    boxes, scores, classes: one image's `[n, 4]` xyxy, `[n]`, `[n]` (jaxdet, valid rows only).
    ref_boxes, ref_scores, ref_classes: the reference's, same shapes.
  """
  boxes, ref_boxes = np.asarray(boxes, np.float64), np.asarray(ref_boxes, np.float64)
  scores, ref_scores = np.asarray(scores, np.float64), np.asarray(ref_scores, np.float64)
  classes, ref_classes = np.asarray(classes), np.asarray(ref_classes)
  assert len(scores) == len(ref_scores), (len(scores), len(ref_scores))
  np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=score_atol)
  used = np.zeros(len(ref_scores), bool)
  for i in range(len(scores)):
    group = np.flatnonzero((np.abs(ref_scores - ref_scores[i]) <= score_atol) & ~used)
    same = [j for j in group if ref_classes[j] == classes[i]
            and np.all(np.abs(ref_boxes[j] - boxes[i]) <= box_atol)]
    assert same, (f"detection {i} (class {classes[i]}, score {scores[i]:.7f}, box {boxes[i]}) "
                  f"matches no reference detection of equal score; reference {i}: class "
                  f"{ref_classes[i]}, box {ref_boxes[i]}")
    used[same[0]] = True


def convert_torchvision(model, arch, folder, *args):
  """Saves `model`'s state dict as safetensors and runs `jaxdet convert torchvision` into
  `folder` (a `pathlib.Path`, created) with `args` (e.g. `--image-size 128`); returns `folder`."""
  from jaxdet import cli
  from safetensors.numpy import save_file
  folder.mkdir(parents=True, exist_ok=True)
  weights = folder.parent / f"{folder.name}.safetensors"
  save_file(numpy_state_dict(model), str(weights))
  assert cli.main(["convert", "torchvision", "--arch", arch, "--weights", str(weights),
                   "--output", str(folder / "out"), *args]) == 0
  return folder / "out"


def torchvision_detections(model, image):
  """A torchvision detector's `model.eval()([image])[0]` of one uint8 `[H, W, 3]` photo (as
  `ToTensor`: pixels / 255): `(boxes [n, 4], scores [n], labels [n])` NumPy, photo pixels."""
  torch, _ = torch_modules()
  with torch.no_grad():
    ref = model([torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255])
  return tuple(ref[0][k].numpy() for k in ("boxes", "scores", "labels"))


def assert_photo_detections(out, ref, *, index=0, label_offset=0, min_count=1, box_atol=1e-2,
                            score_atol=1e-4, what=""):
  """Image `index` of a predict dict (`jaxdet.load(...).predict` or `jaxdet_export.Detector`)
  against the reference's `(boxes, scores, labels)` by `assert_same_detections` (issue 28's
  photo tolerances by default: 1e-2 px, 1e-4). `label_offset`: the reference's label of jaxdet
  class 0 (torchvision's background shift).

  jaxdet drops detections of zero area (a box clipped away onto an image edge, e.g. from an
  anchor in the padding); torchvision's RetinaNet and SSD keep them. Such a box suppresses
  nothing (IoU 0), so jaxdet's detections are the reference's without them, followed, where the
  reference stopped at its cap, by the next ones: the reference's non-empty detections must be
  jaxdet's first ones, and jaxdet has at most as many as the reference.
  """
  boxes, scores, labels = (np.asarray(x) for x in ref)
  nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
  n, m = int(out["num_detections"][index]), int(nonempty.sum())
  assert m >= min_count, (what, "too few reference detections", m)
  if nonempty.all():
    assert n == m, (what, n, m)
  else:
    assert m <= n <= len(scores), (what, n, m, len(scores))
  assert_same_detections(out["boxes"][index, :m], out["scores"][index, :m],
                         out["classes"][index, :m] + label_offset, boxes[nonempty],
                         scores[nonempty], labels[nonempty], box_atol=box_atol,
                         score_atol=score_atol)
