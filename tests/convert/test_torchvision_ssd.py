"""torchvision `ssd300_vgg16` -> jaxdet `ssd`: the final detections of `jaxdet.load(DIR).predict`
on a 300 x 300 image equal torchvision's `model.eval()` (boxes, scores, classes, order)."""

import numpy as np
import pytest

from jaxdet.convert import torchvision_ssd as det
from tests import testing_torch

SIZE = 300  # SSD300 is fixed-size: one image, one compile


THRESHOLD = 0.2  # ~300 candidates at these weights


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  """(torchvision model, the converted folder) with heads at trained-model magnitudes.

  Random VGG features give saturated softmax scores (many exactly 1.0: an order decided by
  rounding) and box deltas far beyond a trained model's. Both heads' last convs are scaled to
  trained-model magnitudes; both sides get the same weights.
  """
  torch, _ = testing_torch.torch_modules()
  model = testing_torch.torchvision_model("ssd300_vgg16", score_thresh=THRESHOLD)
  with torch.no_grad():
    for head, factor in ((model.head.classification_head, 0.2),
                         (model.head.regression_head, 0.1)):
      for conv in head.module_list:
        conv.weight.mul_(factor)
        conv.bias.mul_(factor)
  folder = testing_torch.convert_torchvision(model, "ssd300_vgg16",
                                             tmp_path_factory.mktemp("ssd"),
                                             f"--config.postprocess.score_threshold={THRESHOLD}")
  return model, folder


@pytest.mark.slow  # ~40 s: torchvision's init of 35 M params, one SSD300 compile
def test_final_detections_match_torchvision(converted):
  import jaxdet
  torch, _ = testing_torch.torch_modules()
  model, folder = converted
  detector = jaxdet.load(folder)
  assert detector.image_size == SIZE and detector.class_names == det.COCO_CATEGORIES[1:]
  assert detector.postprocess == {"score_threshold": THRESHOLD, "iou_threshold": 0.45,
                                  "max_detections": 200, "pre_nms_top_k": 400,
                                  "pre_nms_top_k_per_level": False,
                                  "pre_nms_top_k_per_class": True}
  image = np.random.default_rng(0).integers(0, 256, (1, SIZE, SIZE, 3), dtype=np.uint8)
  out = detector.predict(image)
  with torch.no_grad():
    ref = model([torch.from_numpy(image[0].transpose(2, 0, 1).copy()).float() / 255])[0]
  n = int(out["num_detections"][0])
  assert n == len(ref["scores"]) and 20 <= n < 200, (n, len(ref["scores"]))  # below the cap
  testing_torch.assert_same_detections(
      out["boxes"][0, :n], out["scores"][0, :n], out["classes"][0, :n] + 1,  # label 0: background
      ref["boxes"].numpy(), ref["scores"].numpy(), ref["labels"].numpy(), box_atol=1e-3,
      score_atol=1e-5)


@pytest.mark.slow
def test_photos_of_any_size_match_torchvision_in_jax_and_onnx(converted, tmp_path):
  """Real photos of other sizes stretched to 300 x 300 as torchvision does (normalize, then
  `F.interpolate` bilinear without antialias): `jaxdet.load(DIR).predict` and the ONNX export
  (which resizes in the graph) give torchvision's detections in the photo's pixels."""
  import dataclasses
  import jaxdet
  import jaxdet_export
  from jaxdet import testing
  model, folder = converted
  # Random weights score real photos lower than the random image (0.03-0.4): a threshold of
  # 0.01 on both sides keeps torchvision's 200 detections of every photo.
  threshold = 0.01
  detector = jaxdet.load(folder)
  detector = dataclasses.replace(detector, postprocess=dict(detector.postprocess,
                                                            score_threshold=threshold))
  jaxdet_export.export_onnx(detector, tmp_path / "m.onnx")
  served = jaxdet_export.Detector(tmp_path / "m.onnx")
  assert served.metadata.dynamic_image_size and served.metadata.interpolation == "torch"
  photos = testing.photos()
  batch = detector.predict(list(photos.values()))
  model.score_thresh, saved = threshold, model.score_thresh
  try:
    refs = [testing_torch.torchvision_detections(model, photo) for photo in photos.values()]
  finally:
    model.score_thresh = saved
  for i, (name, photo) in enumerate(photos.items()):
    for what, out, index in (("jax", batch, i), ("onnx", served.predict(photo), 0)):
      testing_torch.assert_photo_detections(out, refs[i], index=index, label_offset=1,
                                            min_count=100, what=(name, what))


def test_key_map_and_class_names():
  assert det.prepare({"backbone.scale_weight": 1, "x": 2}) == {"backbone.l2norm.weight": 1, "x": 2}
  assert det._ssd(("backbone", "conv4_3")) == ("backbone.features.21", None)
  assert det._ssd(("backbone", "conv5_1")) == ("backbone.extra.0.1", None)
  assert det._ssd(("backbone", "fc7")) == ("backbone.extra.0.7.3", None)
  assert det._ssd(("extra3_conv",)) == ("backbone.extra.4.2", None)
  assert det._ssd(("cls_head5",)) == ("head.classification_head.module_list.5", None)
  assert det.class_names(90)[0] == "person" and det.class_names(2) == ["1", "2"]
