"""Config files, `--config.KEY=VALUE` overrides with type checks, and the JSON round trip."""

import pathlib

import ml_collections
import pytest

from jaxdet.train import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.py"))


def _config():
  return ml_collections.ConfigDict({
      "total_steps": 10, "lr": 0.1, "name": "yolo", "flag": False, "sizes": (1, 2),
      "optimizer": {"name": "sgd", "momentum": 0.9}})


@pytest.mark.parametrize("key,text,expected", [
    ("total_steps", "40", 40),
    ("lr", "3e-4", 3e-4),
    ("lr", "2", 2.0),
    ("name", "retinanet", "retinanet"),
    ("flag", "true", True),
    ("flag", "False", False),
    ("sizes", "(3, 4, 5)", (3, 4, 5)),
    ("sizes", "[7]", (7,)),
    ("optimizer.momentum", "0.5", 0.5),
])
def test_override_parses_to_the_field_type(key, text, expected):
  out = config_lib.apply_overrides(_config(), {key: text})
  node = out
  for part in key.split("."):
    node = node[part]
  assert node == expected and type(node) is type(expected)


def test_overrides_do_not_mutate_the_input():
  base = _config()
  config_lib.apply_overrides(base, {"total_steps": "3"})
  assert base.total_steps == 10


@pytest.mark.parametrize("key,text,message", [
    ("total_stepz", "1", "unknown config key 'total_stepz'"),
    ("optimizer.nesterov", "1", "unknown config key 'optimizer.nesterov'"),
    ("lr.x", "1", "is not a sub-config"),
    ("optimizer", "1", "names a sub-config"),
    ("total_steps", "4.5", "expected an int"),
    ("lr", "fast", "expected a float"),
    ("flag", "maybe", "expected a bool"),
    ("sizes", "3", "expected a tuple"),
])
def test_bad_overrides_are_clear_errors(key, text, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.apply_overrides(_config(), {key: text})


def test_parse_override_args_both_spellings():
  assert config_lib.parse_override_args(
      ["--config.total_steps=40", "--config.batch_size", "4", "--config.a.b=x=y"]) == {
          "total_steps": "40", "batch_size": "4", "a.b": "x=y"}
  with pytest.raises(config_lib.ConfigError, match="unrecognized argument"):
    config_lib.parse_override_args(["--steps=3"])
  with pytest.raises(config_lib.ConfigError, match="needs a value"):
    config_lib.parse_override_args(["--config.total_steps"])


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_loads_and_round_trips_through_json(path):
  config = config_lib.load_config_file(path)
  for key in ("total_steps", "batch_size", "image_size", "optimizer", "model", "postprocess"):
    assert key in config
  back = config_lib.from_json(config_lib.to_json(config))
  assert back.to_dict() == config.to_dict()
  assert config_lib.diff_keys(config, back) == []


def test_experiments_exist():
  names = {p.stem for p in EXPERIMENTS}
  assert {"shapes_yolo_anchor_free", "shapes_retinanet", "voc_retinanet", "coco_retinanet"} <= names


def test_diff_keys_names_changed_leaves():
  a = _config()
  b = config_lib.apply_overrides(a, {"optimizer.momentum": "0.1", "total_steps": "3"})
  assert config_lib.diff_keys(a, b) == ["optimizer.momentum", "total_steps"]


@pytest.mark.parametrize("body,message", [
    ("x = 1\n", "does not define get_config"),
    ("def get_config():\n  return {}\n", "must return an ml_collections.ConfigDict"),
    ("raise RuntimeError('boom')\n", "cannot import config file.*boom"),
])
def test_bad_config_files(tmp_path, body, message):
  path = tmp_path / "exp.py"
  path.write_text(body)
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.load_config_file(path)


def test_missing_config_file_and_corrupt_json(tmp_path):
  with pytest.raises(config_lib.ConfigError, match="not found"):
    config_lib.load_config_file(tmp_path / "nope.py")
  with pytest.raises(config_lib.ConfigError, match="corrupt"):
    config_lib.from_json("{not json")
