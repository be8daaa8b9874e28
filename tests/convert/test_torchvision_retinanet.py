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


THRESHOLD = 0.005  # random weights score about sigmoid(-4.6) = 0.01


def _scaled_model(arch, cls_scale=1.0, **kwargs):
  """A random torchvision RetinaNet whose box deltas have a trained model's magnitude.

  Random weights through 50 randomized-BN layers give box deltas far beyond a trained model's
  (|d| of several units, w * exp(dw) saturating torchvision's clamp), where float32 rounding of
  the network alone (~1e-5 relative, either framework) exceeds 1e-3 px. The last regression
  conv is scaled to trained-model magnitudes; both sides get the same weights. `cls_scale`
  shrinks the class logits' weights (at 800 px random logits saturate the scores at 1.0, where
  the ranking is float32 rounding).
  """
  torch, _ = testing_torch.torch_modules()
  model = testing_torch.torchvision_model(arch, image_size=SIZE, score_thresh=THRESHOLD, **kwargs)
  with torch.no_grad():
    model.head.regression_head.bbox_reg.weight.mul_(0.1)
    model.head.regression_head.bbox_reg.bias.mul_(0.1)
    model.head.classification_head.cls_logits.weight.mul_(cls_scale)
  return model


@pytest.fixture(scope="module", params=sorted(det.RETINANET_VARIANTS))
def converted(request, tmp_path_factory):
  """(arch, torchvision model built with min_size = max_size = SIZE, the converted folder
  `--image-size SIZE`)."""
  arch = request.param
  model = _scaled_model(arch, min_size=SIZE, max_size=SIZE)
  folder = testing_torch.convert_torchvision(
      model, arch, tmp_path_factory.mktemp(arch), "--image-size", str(SIZE),
      f"--config.postprocess.score_threshold={THRESHOLD}")
  return arch, model, folder


@pytest.mark.slow
def test_final_detections_match_torchvision(converted):
  import jaxdet
  _, model, folder = converted
  torch, _ = testing_torch.torch_modules()
  images = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
  out = jaxdet.load(folder).predict(images)
  with torch.no_grad():
    ref = model([torch.from_numpy(im.transpose(2, 0, 1).copy()).float() / 255 for im in images])
  for i, r in enumerate(ref):
    n = int(out["num_detections"][i])
    assert n == len(r["scores"]) > 0
    testing_torch.assert_same_detections(
        out["boxes"][i, :n], out["scores"][i, :n], out["classes"][i, :n],
        r["boxes"].numpy(), r["scores"].numpy(), r["labels"].numpy(), box_atol=1e-3,
        score_atol=1e-5)


@pytest.mark.slow
def test_photos_of_any_size_match_torchvision_in_jax_and_onnx(converted, tmp_path):
  """Real photos of other sizes and aspect ratios (resized by torchvision's min/max-size rule,
  each run at its own padded size): `jaxdet.load(DIR).predict` and the ONNX export through
  `jaxdet_export.Detector` give torchvision's detections in the photo's pixels. v1 takes every
  photo (landscape, portrait, square, tiny, huge, strip: four padded sizes); v2 the portrait."""
  import jaxdet
  import jaxdet_export
  from jaxdet import testing
  arch, model, folder = converted
  names = testing.PHOTOS if arch == "retinanet_resnet50_fpn" else ("portrait",)
  photos = testing.photos(names)
  detector = jaxdet.load(folder)
  jaxdet_export.export_onnx(detector, tmp_path / "m.onnx")
  served = jaxdet_export.Detector(tmp_path / "m.onnx")
  assert served.metadata.dynamic_image_size and served.metadata.resize == "rcnn"
  batch = detector.predict(list(photos.values()))  # mixed sizes in one call
  for i, (name, photo) in enumerate(photos.items()):
    ref = testing_torch.torchvision_detections(model, photo)
    for what, out in (("jax", detector.predict(photo)), ("onnx", served.predict(photo)),
                      ("jax batch", batch)):
      testing_torch.assert_photo_detections(out, ref, index=i if what == "jax batch" else 0,
                                            min_count=10, what=(name, what))


@pytest.mark.slow
def test_torchvision_defaults_800_1333_on_a_photo(tmp_path):
  """Without --image-size the folder keeps torchvision's min_size 800 / max_size 1333: a
  400 x 600 photo runs at 800 x 1200 (padded 800 x 1216) in JAX and ONNX, as in torchvision."""
  import jaxdet
  import jaxdet_export
  from jaxdet import testing
  arch = "retinanet_resnet50_fpn"
  model = _scaled_model(arch, cls_scale=0.3, num_classes=5)
  folder = testing_torch.convert_torchvision(model, arch, tmp_path / "rn",
                                             f"--config.postprocess.score_threshold={THRESHOLD}")
  detector = jaxdet.load(folder)
  pre = detector.preprocess
  assert (pre.resize, pre.min_size, pre.max_size, detector.image_size) == ("rcnn", 800, 1333, 1344)
  photo = testing.photos(("landscape",))["landscape"]
  ref = testing_torch.torchvision_detections(model, photo)
  from jaxdet import cli
  assert cli.main(["export", "--workdir", str(folder), "--output", str(tmp_path / "m.onnx")]) == 0
  for what, out in (("jax", detector.predict(photo)),
                    ("onnx", jaxdet_export.Detector(tmp_path / "m.onnx").predict(photo))):
    testing_torch.assert_photo_detections(out, ref, min_count=10, what=what)


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


@pytest.mark.slow
def test_readme_fine_tuning_recipe_for_other_classes(tmp_path, tiny_data_dir):
  """The README's recipe: a converted torchvision RetinaNet's backbone and FPN, trained with
  `experiments/shapes_retinanet_torchvision.py` on shapes' classes (new heads). One step at
  64 px on shapes/tiny; the frozen stem must still be the converted one."""
  import pathlib
  import jaxdet
  from jaxdet import cli
  arch = "retinanet_resnet50_fpn"
  model = testing_torch.torchvision_model(arch, image_size=64, num_classes=5)
  folder = testing_torch.convert_torchvision(model, arch, tmp_path / "rn50")
  config = pathlib.Path(__file__).parents[2] / "experiments" / "shapes_retinanet_torchvision.py"
  assert cli.main(["train", "--config", str(config), "--workdir", str(tmp_path / "ft"),
                   f"--config.init_from.checkpoint={folder}", "--config.dataset=shapes/tiny",
                   f"--config.data_dir={tiny_data_dir}", "--config.total_steps=1",
                   "--config.eval_every=0", "--config.batch_size=2", "--config.image_size=64",
                   "--config.model.preprocess.min_size=64", "--config.model.preprocess.max_size=64",
                   "--no-progress"]) == 0
  tuned, converted = jaxdet.load(tmp_path / "ft"), jaxdet.load(folder)
  assert len(tuned.class_names) == 6 and len(converted.class_names) == 5
  stem = lambda d: np.asarray(d.variables["params"]["backbone"]["stem"]["conv"]["kernel"])
  np.testing.assert_array_equal(stem(tuned), stem(converted))
