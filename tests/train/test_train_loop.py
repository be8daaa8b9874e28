"""`train_and_evaluate` on stand-ins: exact resume after SIGINT, NaN stop, config/metrics files."""

import json
import re
import signal

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import train_standins as si
from jaxdet.train import checkpoint as ckpt
from jaxdet.train import config as config_lib
from jaxdet.train import logging as log_lib
from jaxdet.train import loop


def _state_tree(workdir, step):
  return ocp.StandardCheckpointer().restore(
      (workdir / "checkpoints" / "latest" / str(step) / "state").absolute())


_interrupting = si.interrupting


def test_interrupted_and_resumed_run_is_bit_identical(tmp_path):
  config = si.tiny_config(total_steps=6, **{"checkpoint.every": 4, "optimizer.ema_decay": 0.9})
  straight, resumed = tmp_path / "straight", tmp_path / "resumed"
  loop.train_and_evaluate(config, straight, components=si.components(config), progress=False)

  with pytest.raises(loop.TrainingInterrupted, match="SIGINT at step 3"):
    loop.train_and_evaluate(config, resumed,
                            components=_interrupting(si.components(config), at_step=2),
                            progress=False)
  assert ckpt.latest_manager(resumed).latest_step() == 3  # saved before exiting
  loop.train_and_evaluate(config, resumed, components=si.components(config), progress=False)

  a, b = _state_tree(straight, 6), _state_tree(resumed, 6)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert int(np.asarray(a["step"])) == 6
  # The restored run logged steps 4..6 after the first run's 1..3.
  steps = [r["step"] for r in log_lib.read_metrics(resumed) if r["split"] == "train"]
  assert steps == [1, 2, 3, 4, 5, 6]


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
  config = si.tiny_config(total_steps=8, debug_nan_at_step=3, **{"checkpoint.every": 2})
  with pytest.raises(loop.TrainingError, match=r"non-finite loss or gradient at step 3.*step 2"):
    loop.train_and_evaluate(config, tmp_path, components=si.components(config), progress=False)
  manager = ckpt.latest_manager(tmp_path)
  assert manager.all_steps() == [2]
  state = _state_tree(tmp_path, 2)
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state["params"]))


def test_workdir_files_and_metrics(tmp_path):
  config = si.tiny_config(total_steps=4)
  loop.train_and_evaluate(config, tmp_path, components=si.components(config), progress=False)
  stored = config_lib.from_json((tmp_path / "config.json").read_text())
  assert stored.to_dict() == config.to_dict()
  records = log_lib.read_metrics(tmp_path)
  assert [r["step"] for r in records] == [1, 2, 3, 4]
  for r in records:
    assert {"loss", "lr", "images_per_sec", "grad_norm", "box_loss"} <= set(r)
    assert np.isfinite(r["loss"]) and r["images_per_sec"] > 0
  meta = ckpt.read_meta(tmp_path / "checkpoints" / "latest" / "4")
  assert meta["step"] == 4 and meta["class_names"] == ["a", "b", "c"]
  assert json.loads(meta["config"])["total_steps"] == 4
  # Running again on a finished workdir resumes at the end and trains nothing more.
  loop.train_and_evaluate(config, tmp_path, components=si.components(config), progress=False)
  assert len(log_lib.read_metrics(tmp_path)) == 4


def test_early_stopping_and_best_checkpoint_policy(tmp_path, monkeypatch):
  config = si.tiny_config(total_steps=8, eval_every=1, early_stopping_patience=2,
                          **{"checkpoint.every": 100, "checkpoint.keep_best": 1})
  aps = iter([0.5, 0.7, 0.3, 0.2, 0.9])
  calls = []

  def fake_evaluate(*, predict, variables, batches, ground_truth, class_names, report_dir):
    calls.append(report_dir)
    return {"AP": next(aps), "AP50": 0.0}
  monkeypatch.setattr(loop.eval_lib, "evaluate", fake_evaluate)
  components = si.components(config)

  def eval_batches():
    batch = si.make_batch(0, batch_size=2)
    return [dict(batch, example_mask=np.array([True, False]),
                 scale=np.ones((2, 2), np.float32),
                 orig_size=np.full((2, 2), si.IMAGE_SIZE, np.int32))]
  components.eval_batches = eval_batches
  components.ground_truth = lambda: {}
  metrics = loop.train_and_evaluate(config, tmp_path, components=components, progress=False)
  # AP 0.5, 0.7 (best), 0.3, 0.2 -> two evaluations without gain -> stop after step 4.
  assert metrics["AP"] == 0.2 and len(calls) == 4
  assert ckpt.latest_manager(tmp_path).all_steps() == [4]  # saved when stopping early
  assert ckpt.best_manager(tmp_path, keep=1).all_steps() == [2]  # best AP, not the latest
  assert ckpt.find_step_dir(tmp_path).name == "2"
  evals = [r for r in log_lib.read_metrics(tmp_path) if r["split"] == "eval"]
  assert [r["AP"] for r in evals] == [0.5, 0.7, 0.3, 0.2]
  assert (tmp_path / "predictions.png").is_file()


def test_init_from_checkpoint_copies_matching_parameters_only(tmp_path):
  source = tmp_path / "source"
  config = si.tiny_config(total_steps=2)
  loop.train_and_evaluate(config, source, components=si.components(config), progress=False)
  trained = _state_tree(source, 2)["params"]

  target = tmp_path / "target"
  config_b = si.tiny_config(total_steps=1, seed=7, **{"init_from.checkpoint": str(source),
                                                      "init_from.include_regex": "^backbone_",
                                                      "optimizer.learning_rate": 0.0})
  loop.train_and_evaluate(config_b, target, components=si.components(config_b), progress=False)
  params = _state_tree(target, 1)["params"]
  np.testing.assert_array_equal(params["backbone_conv"]["kernel"],
                                trained["backbone_conv"]["kernel"])
  assert not np.allclose(params["cls_head"]["kernel"], trained["cls_head"]["kernel"])

  bad = si.tiny_config(total_steps=1, **{"init_from.checkpoint": str(source),
                                         "init_from.include_regex": "^no_such_layer"})
  with pytest.raises(loop.TrainingError, match="no parameter"):
    loop.train_and_evaluate(bad, tmp_path / "bad", components=si.components(bad), progress=False)


def _five_class_components(config):
  """The stand-ins with a 5-class model (the trained ones have 3 classes)."""
  components = si.components(config)
  components.model = si.TinyDetector(num_classes=5)
  components.class_names = ("a", "b", "c", "d", "e")
  components.loss_fn = lambda preds, batch: (  # the stand-in loss is for 3 classes
      jnp.mean(preds["cls_logits"] ** 2) + jnp.mean(preds["box"] ** 2), {})
  return components


def test_init_from_with_other_class_count_names_the_parameter_and_include_regex(tmp_path):
  source = tmp_path / "source"
  config = si.tiny_config(total_steps=1)
  loop.train_and_evaluate(config, source, components=si.components(config), progress=False)
  target = tmp_path / "target"
  config_b = si.tiny_config(total_steps=1, **{"init_from.checkpoint": str(source),
                                              "init_from.include_regex": ""})
  with pytest.raises(loop.TrainingError) as e:
    loop.train_and_evaluate(config_b, target, components=_five_class_components(config_b),
                            progress=False)
  message = str(e.value)
  assert re.search(r"^init_from: cls_head/(bias|kernel) has shape \((1, 1, 8, )?3,?\) in .*source "
                   r"but \((1, 1, 8, )?5,?\) in this model \(3 classes there, 5 here\); copy only "
                   r"the layers whose shapes match with --config.init_from.include_regex="
                   r"'\^\(backbone_bn\|backbone_conv\|box_head\)/' \(now ''\)$", message), message
  assert not target.exists()  # a run that fails to start writes nothing

  # The suggested regex works.
  regex = re.search(r"include_regex='([^']+)'", message).group(1)
  config_c = si.tiny_config(total_steps=1, **{"init_from.checkpoint": str(source),
                                              "init_from.include_regex": regex})
  loop.train_and_evaluate(config_c, target, components=_five_class_components(config_c),
                          progress=False)
  assert (target / "config.json").is_file()


def test_transfer_regex_selects_the_modules_whose_shapes_all_match():
  z = np.zeros
  target = {"backbone": {"conv": {"kernel": z((3, 3, 3, 8))}}, "fpn": {"kernel": z((2,))},
            "cls_head": {"kernel": z((1, 1, 8, 5)), "bias": z((5,))},
            "box_head": {"kernel": z((1, 1, 8, 4))}}
  source = dict(target, cls_head={"kernel": z((1, 1, 8, 3)), "bias": z((3,))})
  assert loop.transfer_regex(target, source) == "^(backbone|box_head|fpn)/"
  assert re.search("^(backbone|box_head|fpn)/", "fpn/kernel")
  # One module per layer (Darknet): all but the mismatched ones is the shorter regex.
  layers = {f"layer_{i}_conv": {"kernel": z((1, 1, 2, 6 if i in (29, 36) else 2))}
            for i in range(40)}
  other = {k: {"kernel": z((1, 1, 2, 2))} for k in layers}
  regex = loop.transfer_regex(layers, other)
  assert regex == "^(?!(layer_29_conv|layer_36_conv)/)"
  assert [k for k in layers if re.search(regex, f"{k}/kernel")] == [
      k for k in layers if k not in ("layer_29_conv", "layer_36_conv")]
  assert loop.transfer_regex(target, {"other": {"kernel": z((1,))}}) is None


def test_a_run_that_fails_to_start_writes_nothing(tmp_path):
  """A failed start used to rewrite config.json (then the workdir held two disagreeing configs:
  it and the checkpoints' own) or leave a new workdir behind."""
  bad = si.tiny_config(total_steps=2, batch_size=0)
  with pytest.raises(ValueError, match=r"--config.batch_size=0: must be an integer >= 1"):
    loop.train_and_evaluate(bad, tmp_path / "new", components=si.components(bad), progress=False)
  assert not (tmp_path / "new").exists()

  config = si.tiny_config(total_steps=2)
  loop.train_and_evaluate(config, tmp_path, components=si.components(config), progress=False)
  files = {p: p.read_bytes() for p in (tmp_path / "config.json", tmp_path / "metrics.jsonl")}
  longer = {"total_steps": 4}
  rejected = [  # resumed with: a bad optimizer; a model whose shapes differ from the checkpoint
      (si.tiny_config(**longer, **{"optimizer.name": "adamx"}), si.components, "adamx"),
      (si.tiny_config(**longer), _five_class_components, None),
  ]
  for bad, make, message in rejected:
    with pytest.raises(Exception, match=message):
      loop.train_and_evaluate(bad, tmp_path, components=make(bad), progress=False)
    for path, content in files.items():
      assert path.read_bytes() == content, path.name  # byte for byte
    assert ckpt.latest_manager(tmp_path).all_steps() == [2]


def _with_eval(components, evaluate_results, monkeypatch):
  """Stand-in eval data, and `eval_lib.evaluate` returning (or raising) the given results."""
  results = iter(evaluate_results)

  def fake_evaluate(*, predict, variables, batches, ground_truth, class_names, report_dir):
    result = next(results)
    if isinstance(result, Exception):
      raise result
    return result
  monkeypatch.setattr(loop.eval_lib, "evaluate", fake_evaluate)

  def eval_batches():
    batch = si.make_batch(0, batch_size=2)
    return [dict(batch, example_mask=np.array([True, False]), scale=np.ones((2, 2), np.float32),
                 orig_size=np.full((2, 2), si.IMAGE_SIZE, np.int32))]
  components.eval_batches = eval_batches
  components.ground_truth = lambda: {}
  return components


def test_failing_final_evaluation_keeps_trained_state_and_rerun_only_evaluates(
    tmp_path, monkeypatch, capsys):
  config = si.tiny_config(total_steps=4, eval_every=10, **{"checkpoint.every": 100})
  components = _with_eval(si.components(config),
                          [KeyError("objects/bbox"), {"AP": 0.25, "AP50": 0.5}], monkeypatch)
  with pytest.raises(loop.TrainingError, match=r"evaluation at step 4 failed.*KeyError.*saved "
                                               r"at step 4.*run the same command again"):
    loop.train_and_evaluate(config, tmp_path, components=components, progress=False)
  assert ckpt.latest_manager(tmp_path).all_steps() == [4]  # saved before the evaluation
  trained = _state_tree(tmp_path, 4)

  metrics = loop.train_and_evaluate(config, tmp_path, components=components, progress=False)
  assert metrics["AP"] == 0.25
  records = log_lib.read_metrics(tmp_path)
  assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4]  # no new steps
  assert [r["step"] for r in records if r["split"] == "eval"] == [4]
  for x, y in zip(jax.tree.leaves(trained), jax.tree.leaves(_state_tree(tmp_path, 4))):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert (tmp_path / "curves.png").is_file()

  # Now finished: says so and how to extend it; nothing is built or trained.
  capsys.readouterr()
  assert loop.train_and_evaluate(config, tmp_path, components=None, progress=False) == {
      "AP": 0.25, "AP50": 0.5}
  out = capsys.readouterr().out
  assert "is finished (AP=0.2500, AP50=0.5000)" in out and "--config.total_steps=N" in out


def test_preflight_runs_before_anything_is_created(tmp_path):
  config = si.tiny_config(total_steps=2)
  components = si.components(config)

  def preflight():
    raise ValueError("dataset 'x' has no split 'validation'")
  components.preflight = preflight
  compiled = []
  components.train_batches = lambda start: compiled.append(start)
  with pytest.raises(ValueError, match="no split 'validation'"):
    loop.train_and_evaluate(config, tmp_path / "run", components=components, progress=False)
  assert not (tmp_path / "run").exists() and not compiled


@pytest.mark.parametrize("needed,message", [
    ({"--config.eval_split": "validation"},
     r"no split 'validation' \(--config.eval_split=validation\); its splits: test \(3\), train "
     r"\(9\)\. Pass --config.eval_split=NAME \(or --config.eval_every=0"),
    ({"--config.train_split": "train[:50%]+val"}, "no split 'val'"),
    ({"--split": "test"}, "split 'test' of dataset 'd' is empty"),
])
def test_check_splits_messages(needed, message):
  from jaxdet.train import preflight
  counts = {"train": 9, "test": 3} if "--split" not in needed else {"train": 9, "test": 0}
  with pytest.raises(ValueError, match=message):
    preflight.check_splits("d", counts, needed)
  preflight.check_splits("d", {"train": 9, "val": 1}, {"--config.train_split": "train[:50%]+val"})


def test_interrupt_before_the_first_step_and_during_evaluation(tmp_path, monkeypatch):
  config = si.tiny_config(total_steps=4, eval_every=2, **{"checkpoint.every": 100})
  components = _with_eval(si.components(config), [{"AP": 0.1}], monkeypatch)
  model = components.model

  class SignalOnInit:  # SIGINT while the model is being initialized (its first compile).
    def init(self, *args, **kwargs):
      signal.raise_signal(signal.SIGINT)
      return model.init(*args, **kwargs)

    def __getattr__(self, name):
      return getattr(model, name)
  components.model = SignalOnInit()
  with pytest.raises(loop.TrainingInterrupted, match="SIGINT before the first step: nothing was "
                                                     "trained yet; run the same command again"):
    loop.train_and_evaluate(config, tmp_path, components=components, progress=False)
  assert ckpt.latest_manager(tmp_path).all_steps() == []

  # SIGINT during the evaluation at step 2: the state of step 2 is saved, then it stops.
  components.model = model
  inner = loop.eval_lib.evaluate

  def evaluate_interrupted(**kwargs):
    signal.raise_signal(signal.SIGINT)
    return inner(**dict(kwargs, batches=list(kwargs["batches"])))
  monkeypatch.setattr(loop.eval_lib, "evaluate", evaluate_interrupted)
  with pytest.raises(loop.TrainingInterrupted, match="SIGINT during the evaluation at step 2: "
                                                     "checkpoint saved"):
    loop.train_and_evaluate(config, tmp_path, components=components, progress=False)
  assert ckpt.latest_manager(tmp_path).all_steps() == [2]


def test_a_converted_weights_only_folder_fine_tunes_in_place(tmp_path):
  """`jaxdet convert` writes weights without a training state: `jaxdet train --workdir DIR`
  starts from those weights at step 0 (fresh optimizer) instead of failing to resume."""
  from jaxdet.convert.checkpoint import write_checkpoint
  config = si.tiny_config(total_steps=2, **{"optimizer.learning_rate": 0.0,
                                            "optimizer.ema_decay": 0.0})
  comps = si.components(config)
  variables = comps.model.init(jax.random.PRNGKey(123),
                               jnp.zeros((1, si.IMAGE_SIZE, si.IMAGE_SIZE, 3)), train=False)
  variables = jax.tree.map(lambda x: np.asarray(x) + 0.25, dict(variables))  # not an init
  write_checkpoint(tmp_path, config, variables, class_names=("a",), source={"test": True})
  loop.train_and_evaluate(config, tmp_path, components=comps, progress=False)
  params = _state_tree(tmp_path, 2)["params"]  # lr 0: the converted weights, unchanged
  for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(variables["params"])):
    np.testing.assert_array_equal(got, want)
