"""`jaxdet train` on a segmentation config, against the data/eval interface (SEG_INTERFACE):
`input_pipeline(..., masks=True)` and `jaxdet.eval.segmentation` are stood in for here when
this branch lacks them (the real ones come from the segmentation-data branch)."""

import types

import flax.linen as nn
import ml_collections
import numpy as np
import pytest

import jaxdet
from jaxdet.models import segmentation
from jaxdet.models.segmentation import fcn
from jaxdet.train import config as config_lib
from jaxdet.train import loop
from jaxdet.train import segmentation as seg_train

SIZE = 32
CLASSES = ("a", "b")


def _batch(step, batch_size, *, train):
  rng = np.random.default_rng([0, step, int(train)])
  mask = rng.integers(0, 3, (batch_size, SIZE // 8, SIZE // 8)).repeat(8, 1).repeat(8, 2)
  image = (mask[..., None] - 1.0) + 0.3 * rng.standard_normal((batch_size, SIZE, SIZE, 3))
  mask = mask.astype(np.int32)
  mask[:, :2] = 255
  return {"image": image.astype(np.float32), "mask": mask,
          "example_mask": np.ones(batch_size, bool), "image_id": np.arange(batch_size),
          "boxes": np.zeros((batch_size, 1, 4), np.float32),
          "classes": np.zeros((batch_size, 1), np.int32),
          "box_mask": np.zeros((batch_size, 1), bool)}


@pytest.fixture
def fake_data(monkeypatch):
  from jaxdet import data
  calls = []

  def input_pipeline(dataset, split, *, batch_size, train, masks=False, start_step=0, **kwargs):
    del kwargs
    calls.append((split, masks))
    if train:
      return (_batch(s, batch_size, train=True) for s in range(start_step, 10 ** 6))
    return [_batch(s, batch_size, train=False) for s in range(2)]

  monkeypatch.setattr(data, "input_pipeline", input_pipeline)
  monkeypatch.setattr(data, "dataset_info", lambda name, data_dir=None: types.SimpleNamespace(
      name=name, class_names=CLASSES, num_examples={"train": 8, "validation": 4}))
  return calls


class _TinySegmenter(nn.Module):
  """Two convs at full resolution: the trainer's segmentation path without FCN's compile time."""
  num_classes: int

  @nn.compact
  def __call__(self, images, *, train=False, targets=None):
    del targets
    x = nn.Conv(8, (3, 3), use_bias=False, name="conv")(images)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, name="bn")(x))
    return {"out": nn.Conv(self.num_classes, (1, 1), name="out")(x)}


class _TinyFamily:
  name = "tiny_segmenter"

  @staticmethod
  def default_config():
    return ml_collections.ConfigDict({"name": "tiny_segmenter", "task": "segmentation"})

  test_config = default_config

  @staticmethod
  def build(config, *, num_classes):
    del config
    return _TinySegmenter(num_classes)

  loss_fn = staticmethod(fcn.loss_fn)


@pytest.fixture(autouse=True)
def tiny_family():
  segmentation.register(_TinyFamily, replace=True)
  yield
  segmentation.unregister(_TinyFamily.name)


def _config():
  config = config_lib.base_config()
  config.update(dataset="fake", image_size=SIZE, batch_size=2, eval_batch_size=2,
                total_steps=4, eval_every=4, log_every=2, tensorboard=False)
  config.optimizer.update(warmup_steps=0, learning_rate=3e-3)
  config.checkpoint.every = 4
  config.model = segmentation.default_config(_TinyFamily.name)
  return config


def test_train_evaluates_segmentation_and_loads(fake_data, tmp_path):
  config = _config()
  components = loop.build_components(config)
  assert components.class_names == ("background",) + CLASSES
  metrics = loop.train_and_evaluate(config, tmp_path, components=components, progress=False)
  assert set(fake_data) == {("train", True), ("validation", True)}  # masks asked for
  assert set(metrics) == set(seg_train.SCALARS) and 0 <= metrics["mean_iou"] <= 1
  for name in ("segmentation_metrics.json", "segmentation_table.txt", "confusion_matrix.png",
               "masks.png"):  # masks.png: predicted masks next to the ground truth
    assert (tmp_path / "eval" / name).exists(), name
  # Issue 28: readable tiles: 4 validation images of 32 px in a 2 x 2 grid (was 70x70 px).
  from PIL import Image
  from jaxdet.data import draw
  grid = np.asarray(Image.open(tmp_path / "predictions.png"))
  assert min(grid.shape[:2]) >= 2 * (draw.MIN_TILE + 2) + 2, grid.shape
  segmenter = jaxdet.load(tmp_path)
  assert segmenter.task == "segmentation" and segmenter.class_names == components.class_names
  assert segmenter.predict(np.zeros((1, SIZE, SIZE, 3), np.uint8))["masks"].shape == (1, SIZE,
                                                                                      SIZE)

  # `jaxdet evaluate --workdir` evaluates it the same way (best = highest mean IoU).
  from jaxdet import cli
  from jaxdet.train.evaluate import evaluate_workdir
  again, report = evaluate_workdir(tmp_path, checkpoint="best")
  assert again == pytest.approx(metrics)
  assert (report / "segmentation_metrics.json").exists() and (report / "masks.png").exists()
  assert cli.main(["evaluate", "--workdir", str(tmp_path), "--json",
                   str(tmp_path / "s.json")]) == 0
  assert (tmp_path / "s.json").exists()


def test_a_dataset_without_masks_fails_before_the_workdir(fake_data, monkeypatch, tmp_path):
  from jaxdet import data

  def no_masks(dataset, split, **kwargs):
    raise ValueError(f"dataset {dataset!r} has no 'segmentation/mask' feature")

  monkeypatch.setattr(data, "input_pipeline", no_masks)
  config = _config()
  with pytest.raises(ValueError, match="segmentation/mask"):
    loop.train_and_evaluate(config, tmp_path / "run", components=loop.build_components(config),
                            progress=False)
  assert not (tmp_path / "run").exists()


def test_a_segmentation_model_is_not_refused_for_a_dataset_without_boxes(boxless_data_dir):
  """Detection refuses a split without boxes; a segmentation model learns from the masks."""
  config = _config()
  config.update(dataset="boxless", data_dir=boxless_data_dir)
  seg_train.build_components(config).preflight()
  from jaxdet import models
  config.model = models.default_config("yolo_anchor_free")
  with pytest.raises(ValueError, match="has no ground-truth boxes in split 'train'"):
    loop.build_components(config).preflight()
