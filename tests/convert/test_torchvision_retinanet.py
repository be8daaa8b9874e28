"""torchvision RetinaNet v1 / v2 -> jaxdet RetinaNet: anchors, classification logits and box
deltas of every anchor (the final detections are compared through `jaxdet.load(DIR).predict`
once the per-level top-k postprocess option is in)."""

import jax
import numpy as np
import pytest

from jaxdet.convert import torchvision as tv_convert
from jaxdet.convert import torchvision_retinanet as det
from tests import testing_torch

SIZE = 128  # P3..P7 = 16..1 pixels


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(det.RETINANET_VARIANTS))
def test_raw_outputs_match_torchvision(arch):
  torch, _ = testing_torch.torch_modules()
  from torchvision.models.detection.image_list import ImageList
  model = testing_torch.torchvision_model(arch, image_size=SIZE)
  module, variables = tv_convert.from_torchvision(arch, testing_torch.numpy_state_dict(model))
  images = testing_torch.random_images(2, SIZE)
  preds = jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, images)
  x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
  with torch.no_grad():
    feats = list(model.backbone(x).values())
    ref = model.head(feats)
    anchors = model.anchor_generator(ImageList(x, [(SIZE, SIZE)] * 2), feats)[0]
  assert preds["cls_logits"].shape == (2, anchors.shape[0], 91)
  np.testing.assert_allclose(np.asarray(preds["anchors"]), anchors.numpy(), atol=1e-4)
  testing_torch.assert_relative_close(preds["cls_logits"], ref["cls_logits"].numpy())
  testing_torch.assert_relative_close(preds["box_deltas"], ref["bbox_regression"].numpy())


def test_legacy_key_names_and_coco_categories():
  torchvision = pytest.importorskip("torchvision")
  sd = {"backbone.fpn.inner_blocks.1.weight": 0, "backbone.fpn.layer_blocks.2.bias": 0,
        "head.classification_head.conv.6.weight": 0, "head.regression_head.conv.2.bias": 0,
        "head.classification_head.conv.3.1.weight": 0}
  assert set(det.upgrade_legacy_keys(sd)) == {
      "backbone.fpn.inner_blocks.1.0.weight", "backbone.fpn.layer_blocks.2.0.bias",
      "head.classification_head.conv.3.0.weight", "head.regression_head.conv.1.0.bias",
      "head.classification_head.conv.3.1.weight"}
  weights = torchvision.models.detection.RetinaNet_ResNet50_FPN_Weights.COCO_V1
  assert tuple(weights.meta["categories"]) == det.COCO_CATEGORIES


@pytest.mark.slow
def test_converted_folder_loads_for_inference(tmp_path):
  import jaxdet
  from safetensors.numpy import save_file
  from jaxdet import cli
  model = testing_torch.torchvision_model("retinanet_resnet50_fpn", image_size=SIZE)
  sd = testing_torch.numpy_state_dict(model)
  save_file(sd, str(tmp_path / "r.safetensors"))
  assert cli.main(["convert", "torchvision", "--arch", "retinanet_resnet50_fpn", "--weights",
                   str(tmp_path / "r.safetensors"), "--output", str(tmp_path / "out"),
                   "--image-size", str(SIZE), "--config.postprocess.score_threshold=0.0"]) == 0
  detector = jaxdet.load(tmp_path / "out")
  assert detector.class_names == det.COCO_CATEGORIES and detector.image_size == SIZE
  assert detector.config.model.p6_from == "p5" and detector.postprocess["score_threshold"] == 0.0
  _, expected = tv_convert.from_torchvision("retinanet_resnet50_fpn", sd)
  for a, b in zip(jax.tree.leaves(detector.variables), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  out = detector.predict(np.zeros((1, SIZE, SIZE, 3), np.uint8))
  assert out["boxes"].shape == (1, 300, 4) and int(out["num_detections"][0]) > 0


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(det.RETINANET_VARIANTS))
def test_final_detections_match_torchvision(arch, tmp_path):
  import inspect
  import jaxdet
  from jaxdet import cli, models
  from safetensors.numpy import save_file
  if "pre_nms_top_k_per_level" not in inspect.signature(models.postprocess).parameters:
    pytest.skip("needs the per-level top-k postprocess option (CONTRACT.md), not merged yet")
  torch, _ = testing_torch.torch_modules()
  threshold = 0.005  # random weights score about sigmoid(-4.6) = 0.01
  model = testing_torch.torchvision_model(arch, image_size=SIZE, min_size=SIZE, max_size=SIZE,
                                          score_thresh=threshold)
  # Random weights through 50 randomized-BN layers give box deltas far beyond a trained model's
  # (|d| of several units, w * exp(dw) saturating torchvision's clamp), where float32 rounding
  # of the network alone (~1e-5 relative, either framework) exceeds 1e-3 px. Scale the last
  # regression conv to trained-model magnitudes; both sides get the same weights.
  with torch.no_grad():
    model.head.regression_head.bbox_reg.weight.mul_(0.1)
    model.head.regression_head.bbox_reg.bias.mul_(0.1)
  save_file(testing_torch.numpy_state_dict(model), str(tmp_path / "w.safetensors"))
  assert cli.main(["convert", "torchvision", "--arch", arch, "--weights",
                   str(tmp_path / "w.safetensors"), "--output", str(tmp_path / "out"),
                   "--image-size", str(SIZE),
                   f"--config.postprocess.score_threshold={threshold}"]) == 0
  images = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
  out = jaxdet.load(tmp_path / "out").predict(images)
  with torch.no_grad():
    ref = model([torch.from_numpy(im.transpose(2, 0, 1).copy()).float() / 255 for im in images])
  for i, r in enumerate(ref):
    n = int(out["num_detections"][i])
    assert n == len(r["scores"]) > 0
    testing_torch.assert_same_detections(
        out["boxes"][i, :n], out["scores"][i, :n], out["classes"][i, :n],
        r["boxes"].numpy(), r["scores"].numpy(), r["labels"].numpy(), box_atol=1e-3,
        score_atol=1e-5)


def test_detection_parity_allows_swaps_only_within_equal_scores():
  boxes = np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 2, 2]], np.float32)
  classes = np.array([1, 2, 1])
  scores = np.array([0.9, 0.5, 0.5 - 4e-6])
  swap = [0, 2, 1]
  testing_torch.assert_same_detections(boxes[swap], scores, classes[swap], boxes, scores, classes)
  far = np.array([0.9, 0.5, 0.4])
  with pytest.raises(AssertionError, match="matches no reference"):
    testing_torch.assert_same_detections(boxes[swap], far, classes[swap], boxes, far, classes)
  with pytest.raises(AssertionError):
    testing_torch.assert_same_detections(boxes + 0.01, scores, classes, boxes, scores, classes)
