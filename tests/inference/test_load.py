"""`jaxdet.load` / `build_detector`: Detector fields, predict shapes and letterbox mapping, and the
checkpoint round trip (JSON + Orbax only)."""

import re

import chex
import jax
import ml_collections
import numpy as np
import pytest

import jaxdet
from jaxdet import models, testing
from jaxdet.train import checkpoint as ckpt
from jaxdet.train import config as config_lib
from jaxdet.inference import load as load_lib

NAMES = ("circle", "square", "triangle")
SIZE = 64


@pytest.fixture(scope="module")
def config():
  c = config_lib.base_config()
  c.image_size = SIZE
  c.model = models.default_config("yolo_anchor_free")
  c.model.width = 0.0625
  c.model.depth = 0.33
  c.postprocess.max_detections = 7
  c.postprocess.score_threshold = 0.0
  return c


@pytest.fixture(scope="module")
def detector(config):
  return load_lib.build_detector(config, None, NAMES)


def test_detector_fields(detector, config):
  assert detector.class_names == NAMES and detector.image_size == SIZE
  assert detector.postprocess == {"score_threshold": 0.0, "iou_threshold": 0.6,
                                  "max_detections": 7, "pre_nms_top_k": 1000,
                                  "pre_nms_top_k_per_level": False,
                                  "pre_nms_top_k_per_class": False}
  assert set(detector.variables) == {"params", "batch_stats"}
  assert detector.config is config


def test_forward_and_predict_shapes(detector):
  images = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
  boxes, scores = jax.jit(detector.forward)(images)
  chex.assert_rank(boxes, 3)
  chex.assert_shape(scores, (2, boxes.shape[1], len(NAMES)))
  chex.assert_type([boxes, scores], [np.float32, np.float32])
  out = detector.predict(images)
  chex.assert_shape([out["boxes"], out["scores"], out["classes"], out["num_detections"]],
                    [(2, 7, 4), (2, 7), (2, 7), (2,)])
  chex.assert_type([out["boxes"], out["scores"], out["classes"], out["num_detections"]],
                   [np.float32, np.float32, np.int32, np.int32])
  assert np.all(out["num_detections"] == 7)  # score_threshold 0: always full
  assert np.all(np.diff(out["scores"], axis=1) <= 0)


def test_predict_letterboxes_and_maps_boxes_back(detector):
  from jaxdet.data.preprocess import letterbox_image
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, (40, 128, 3), dtype=np.uint8)  # scale 0.5, padded at the bottom
  out = detector.predict(image[None])
  boxed, (sx, sy) = letterbox_image(image, SIZE)
  ref = detector.predict(boxed[None])
  n = int(ref["num_detections"][0])
  np.testing.assert_allclose(out["boxes"][0, :n],
                             np.clip(ref["boxes"][0, :n] / [sx, sy, sx, sy], 0, [128, 40, 128, 40]),
                             rtol=1e-5, atol=1e-4)
  np.testing.assert_array_equal(out["classes"], ref["classes"])
  assert np.all(out["boxes"][..., [0, 2]] <= 128) and np.all(out["boxes"][..., [1, 3]] <= 40)


@pytest.mark.parametrize("images,message", [
    (np.zeros((2, 8, 8), np.uint8), r"\[N, H, W, 3\]"),
    (np.zeros((1, 8, 8, 3), np.float32), "uint8"),
    (np.zeros((0, 8, 8, 3), np.uint8), r"N, H, W > 0"),
])
def test_predict_rejects_bad_images(detector, images, message):
  with pytest.raises(ValueError, match=message):
    detector.predict(images)


def _save(workdir, config, variables, *, step, ap):
  meta = {"class_names": list(NAMES), "config": config_lib.to_json(config), "step": step,
          "metrics": {"AP": ap}}
  manager = ckpt.best_manager(workdir, keep=2)
  ckpt.save_best(manager, step=step, model_variables=jax.device_get(variables), meta=meta, ap=ap)
  manager.close()


def test_load_round_trip_picks_best_ap(tmp_path, config, detector):
  other = jax.tree.map(lambda x: x + 1.0, detector.variables)
  _save(tmp_path, config, other, step=10, ap=0.2)
  _save(tmp_path, config, detector.variables, step=20, ap=0.7)
  (tmp_path / "config.json").write_text("this is never read or executed")
  loaded = jaxdet.load(tmp_path)
  assert loaded.class_names == NAMES and loaded.image_size == SIZE
  assert loaded.config.to_dict() == config.to_dict()
  for a, b in zip(jax.tree.leaves(loaded.variables), jax.tree.leaves(detector.variables)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  images = np.random.default_rng(2).integers(0, 256, (1, SIZE, SIZE, 3), dtype=np.uint8)
  for k, v in detector.predict(images).items():
    np.testing.assert_array_equal(loaded.predict(images)[k], v)
  # A specific step folder loads that step.
  step10 = jaxdet.load(tmp_path / "checkpoints" / "best" / "10")
  np.testing.assert_array_equal(jax.tree.leaves(step10.variables)[0],
                                jax.tree.leaves(other)[0])


def test_a_checkpoint_without_the_new_keys_loads_with_defaults(tmp_path, config, detector):
  # Saved before `model.preprocess` and `postprocess.pre_nms_top_k_per_{level,class}` existed.
  old = config_lib.from_json(config_lib.to_json(config))
  del old.model["preprocess"]
  del old.postprocess["pre_nms_top_k_per_level"]
  del old.postprocess["pre_nms_top_k_per_class"]
  _save(tmp_path, old, detector.variables, step=1, ap=0.5)
  loaded = jaxdet.load(tmp_path)
  assert "preprocess" not in loaded.config.model
  assert loaded.postprocess == detector.postprocess
  images = np.random.default_rng(3).integers(0, 256, (2, 40, 90, 3), dtype=np.uint8)
  for k, v in detector.predict(images).items():
    np.testing.assert_array_equal(loaded.predict(images)[k], v)


def test_load_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="no checkpoint found"):
    jaxdet.load(tmp_path)
  step = tmp_path / "checkpoints" / "best" / "3"
  (step / "model").mkdir(parents=True)
  (step / "meta").mkdir()
  with pytest.raises(ValueError, match="cannot read checkpoint"):
    jaxdet.load(step)


def test_load_refuses_a_converted_classifier_in_one_line(tmp_path, monkeypatch):
  """Issue 28: a `jaxdet convert torchvision --arch resnet50` folder ended in a traceback of the
  model registry ("unknown model 'classifier'")."""
  folder = testing.write_classifier_folder(tmp_path / "r18", image_size=SIZE)
  message = (r"r18 holds an image classifier \(resnet18\) converted for use as a detector's "
             r"backbone .*--config.init_from.checkpoint=\S*r18 .*classification inference is "
             r"not supported yet")
  with pytest.raises(ValueError, match=message) as raised:
    jaxdet.load(folder)
  assert "\n" not in str(raised.value)
  # A workdir is named as given (relative here); a checkpoint folder in it names the workdir, as
  # init_from takes it.
  monkeypatch.chdir(tmp_path)
  with pytest.raises(ValueError, match=r"^r18 holds .*init_from.checkpoint=r18 "):
    jaxdet.load("r18")
  with pytest.raises(ValueError, match=f"^{re.escape(str(tmp_path / 'r18'))} holds"):
    jaxdet.load("r18/checkpoints/latest/0")
  with pytest.raises(ValueError, match=r"^this config holds .*checkpoint=DIR "):
    load_lib.build_detector(config_lib.from_json((folder / "config.json").read_text()), None,
                            ("a",))


def test_build_detector_needs_classes(config):
  with pytest.raises(ValueError, match="class_names"):
    load_lib.build_detector(config, None, ())


def test_predict_takes_mixed_sizes_pil_and_paths(detector, tmp_path):
  """The inputs of `jaxdet_export.Detector.predict` (issue 10: a list of different sizes used to
  raise NumPy's "inhomogeneous shape" error)."""
  from PIL import Image
  rng = np.random.default_rng(3)
  a = rng.integers(0, 256, (40, 100, 3), dtype=np.uint8)
  b = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
  Image.fromarray(b).save(tmp_path / "b.png")
  got = detector.predict([a, b])
  for i, single in enumerate((a, b)):
    want = detector.predict(single)
    for k in want:
      np.testing.assert_allclose(got[k][i:i + 1], want[k], rtol=1e-5, atol=1e-4)
  for same_b in (str(tmp_path / "b.png"), tmp_path / "b.png", Image.fromarray(b)):
    np.testing.assert_array_equal(detector.predict([a, same_b])["classes"], got["classes"])


@pytest.mark.parametrize("images, error, message", [
    (np.zeros((1, 256, 256), np.uint8), ValueError, r"got shape \(1, 256, 256\)$"),
    ("no/such/photo.jpg", FileNotFoundError, "image not found: no/such/photo.jpg"),
])
def test_predict_errors_name_the_input_as_passed(detector, images, error, message):
  with pytest.raises(error, match=message):
    detector.predict(images)
