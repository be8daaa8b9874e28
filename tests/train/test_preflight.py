"""`jaxdet.train.preflight`: what a run checks before it writes anything."""

import ml_collections
import pytest

from jaxdet import models
from jaxdet.train import config as config_lib
from jaxdet.train import preflight


def _config(**overrides):
  c = config_lib.base_config()
  c.model = models.default_config("yolo_anchor_free")
  return config_lib.apply_overrides(c, overrides)


def test_every_experiment_passes_check_config():
  import pathlib
  for path in sorted((pathlib.Path(__file__).parents[2] / "experiments").glob("*.py")):
    preflight.check_config(config_lib.load_config_file(path))


@pytest.mark.parametrize("key,value,message", [
    ("augment", "bogus", r"--config.augment: unknown augment preset 'bogus'; expected one of"),
    ("batch_size", "0", r"--config.batch_size=0: must be an integer >= 1"),
    ("batch_size", "-4", r"--config.batch_size=-4: must be an integer >= 1"),
    ("eval_batch_size", "0", r"--config.eval_batch_size=0: must be an integer >= 1"),
    ("total_steps", "0", r"--config.total_steps=0: must be an integer >= 1"),
    ("image_size", "0", r"--config.image_size=0"),
    ("max_boxes", "0", r"--config.max_boxes=0"),
    ("log_every", "0", r"--config.log_every=0"),
    ("checkpoint.every", "0", r"--config.checkpoint.every=0"),
    ("checkpoint.keep_latest", "0", r"--config.checkpoint.keep_latest=0"),
    ("eval_every", "-1", r"--config.eval_every=-1: must be an integer >= 0"),
    ("seed", "-1", r"--config.seed=-1: must be an integer >= 0"),
    ("early_stopping_patience", "-2", r"--config.early_stopping_patience=-2"),
    ("optimizer.learning_rate", "-0.1", r"learning_rate=-0.1: must be a finite number >= 0"),
    ("optimizer.learning_rate", "nan", r"learning_rate=nan: must be a finite number >= 0"),
    ("optimizer.ema_decay", "1.5", r"--config.optimizer.ema_decay=1.5: must be in \[0, 1\)"),
    ("optimizer.name", "adamx", r"--config.optimizer: unknown optimizer.name 'adamx'"),
    ("optimizer.schedule", "linear", r"--config.optimizer: unknown optimizer.schedule 'linear'"),
    ("optimizer.freeze_regex", "(backbone", r"freeze_regex='\(backbone' is not a regular"),
    ("init_from.include_regex", "[", r"include_regex='\[' is not a regular expression"),
    ("compute_dtype", "float16", r"--config.compute_dtype=float16: must be one of float32, "),
    ("model.preprocess.resize", "crop", r"--config.model.preprocess: model.preprocess.resize "),
    ("postprocess.max_detections", "0", r"--config.postprocess: max_detections must be >= 1"),
    ("postprocess.iou_threshold", "1.5", r"--config.postprocess: iou_threshold must be in"),
])
def test_check_config_rejects_values_in_one_line_naming_the_key(key, value, message):
  with pytest.raises(ValueError, match=message) as e:
    preflight.check_config(_config(**{key: value}))
  assert "\n" not in str(e.value)


def test_check_config_rejects_unknown_postprocess_keys_and_augment_options():
  c = _config()
  c.postprocess.max_detection = 10
  with pytest.raises(ValueError, match=r"--config.postprocess: unknown postprocess keys "
                                       r"\['max_detection'\]"):
    preflight.check_config(c)
  c = ml_collections.ConfigDict(dict(_config().to_dict(), augment={"hflip": 0.5, "zoom": 1.0}))
  with pytest.raises(ValueError, match=r"--config.augment: unknown augment options \['zoom'\]"):
    preflight.check_config(c)


def test_check_boxes_refuses_a_split_without_any_box():
  preflight.check_boxes("d", "--config.train_split", "train", True)
  with pytest.raises(ValueError, match=r"dataset 'd' has no ground-truth boxes in split 'train' "
                                       r"\(--config.train_split=train\): nothing to learn"):
    preflight.check_boxes("d", "--config.train_split", "train", False)
  with pytest.raises(ValueError, match=r"split 'validation' \(--config.eval_split=validation\): "
                                       r"nothing to evaluate.*--config.eval_every=0"):
    preflight.check_boxes("d", "--config.eval_split", "validation", False)

