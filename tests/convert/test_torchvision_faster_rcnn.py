"""torchvision Faster R-CNN v1 / v2 -> jaxdet `faster_rcnn`: the RPN's proposals and the final
detections of `jaxdet.load(DIR).predict` equal torchvision's `model.eval()` (random weights)."""

import jax
import numpy as np
import pytest

from jaxdet.convert import torchvision_faster_rcnn as det
from tests import testing_torch

SIZE = 128  # P2..P5 = 32..4 pixels, "pool" 2
NUM_CLASSES = 7  # torchvision's count, background included


def _torchvision_model(arch, cls_scale=1.0):
  """A random torchvision Faster R-CNN at trained-model magnitudes (`scale_faster_rcnn_heads`);
  `cls_scale` further scales the class logits' weights (real photos drive the random box head
  harder than random pixels: their scores saturate at 1.0, a ranking decided by rounding)."""
  torch, _ = testing_torch.torch_modules()
  model = testing_torch.torchvision_model(arch, image_size=SIZE, min_size=SIZE, max_size=SIZE,
                                          num_classes=NUM_CLASSES)
  model = testing_torch.scale_faster_rcnn_heads(model)
  with torch.no_grad():
    model.roi_heads.box_predictor.cls_score.weight.mul_(cls_scale)
  return model


def _converted(arch, folder, cls_scale=1.0):
  """(arch, torchvision model built with min_size = max_size = SIZE, the converted folder
  `--image-size SIZE`).

  torchvision's MultiScaleRoIAlign infers its levels' scales from the first batch it pools and
  keeps them; a first batch of one SIZE x SIZE image fixes them at the strides' (1/4..1/32), as
  any ordinary first image does (jaxdet's; a very short first image would set others).
  """
  torch, _ = testing_torch.torch_modules()
  model = _torchvision_model(arch, cls_scale)
  with torch.no_grad():
    model([torch.zeros(3, SIZE, SIZE)])
  return arch, model, testing_torch.convert_torchvision(model, arch, folder, "--image-size",
                                                        str(SIZE))


@pytest.fixture(scope="module", params=sorted(det.FASTER_RCNN_VARIANTS))
def converted(request, tmp_path_factory):
  # Class logits shrunk: scores ~0.5-0.99 on photos too (not saturated at 1.0).
  return _converted(request.param, tmp_path_factory.mktemp(request.param), cls_scale=0.025)


@pytest.mark.slow
def test_proposals_and_detections_match_torchvision(converted):
  import jaxdet
  torch, _ = testing_torch.torch_modules()
  _, model, folder = converted
  detector = jaxdet.load(folder)
  assert detector.class_names == tuple(str(i) for i in range(1, NUM_CLASSES))
  images = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
  out = detector.predict(images)
  tensors = [torch.from_numpy(im.transpose(2, 0, 1).copy()).float() / 255 for im in images]
  with torch.no_grad():
    ref = model(tensors)
    batch, _ = model.transform(tensors)
    ref_proposals, _ = model.rpn(batch, model.backbone(batch.tensors))

  # RPN proposals: the same set (the order of equal objectness is unspecified in torchvision).
  x = (images.astype(np.float32) / 255 - np.array([0.485, 0.456, 0.406], np.float32)) / np.array(
      [0.229, 0.224, 0.225], np.float32)
  preds = jax.jit(lambda v, x: detector.model.apply(v, x, train=False))(detector.variables, x)
  for i, r in enumerate(ref_proposals):
    mask = np.asarray(preds["proposal_mask"][i]) > 0
    assert mask.sum() == len(r) > 100, (mask.sum(), len(r))
    got = np.asarray(preds["proposals"][i])[mask]
    diff = np.abs(got[:, None] - r.numpy()[None]).max(-1)  # [P, P]
    used = np.zeros(len(r), bool)  # one-to-one: levels may keep the same (clipped) box twice
    for row in diff:
      j = int(np.argmin(np.where(used, np.inf, row)))
      assert row[j] <= 1e-3, row[j]
      used[j] = True

  for i, r in enumerate(ref):
    n = int(out["num_detections"][i])
    assert n == len(r["scores"]) > 10, (n, len(r["scores"]))
    testing_torch.assert_same_detections(
        out["boxes"][i, :n], out["scores"][i, :n], out["classes"][i, :n] + 1,
        r["boxes"].numpy(), r["scores"].numpy(), r["labels"].numpy(), box_atol=1e-3,
        score_atol=1e-5)


@pytest.mark.slow
def test_photos_of_any_size_match_torchvision_in_jax_and_onnx(converted, tmp_path):
  """Real photos of other sizes and aspect ratios (torchvision's min/max-size rule, each run at
  its own padded size; RPN and RoI boxes clipped to the resized photo, a 15-px-high strip
  included): `jaxdet.load(DIR).predict` and the ONNX export through `jaxdet_export.Detector` give
  torchvision's detections in the photo's pixels. v1 takes every photo (four padded sizes), v2
  the portrait."""
  import jaxdet
  import jaxdet_export
  from jaxdet import testing
  arch, model, folder = converted
  names = testing.PHOTOS if arch == "fasterrcnn_resnet50_fpn" else ("portrait",)
  photos = testing.photos(names)
  detector = jaxdet.load(folder)
  jaxdet_export.export_onnx(detector, tmp_path / "m.onnx")
  served = jaxdet_export.Detector(tmp_path / "m.onnx")
  for name, photo in photos.items():
    ref = testing_torch.torchvision_detections(model, photo)
    for what, out in (("jax", detector.predict(photo)), ("onnx", served.predict(photo))):
      testing_torch.assert_photo_detections(out, ref, label_offset=1, min_count=10,
                                            what=(name, what))


def test_coco_class_names_drop_the_background():
  assert det.class_names(90) == list(det.COCO_CATEGORIES[1:])
  assert det.class_names(3) == ["1", "2", "3"]
