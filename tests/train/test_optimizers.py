"""Optimizer zoo, schedules, weight-decay mask and freezing by regex, checked against NumPy."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxdet.train import optimizers
from jaxdet.train.config import base_config


def _opt(**kw):
  o = base_config().optimizer
  o.update(dict(grad_clip_norm=0.0, weight_decay=0.0, warmup_steps=0, schedule="constant"))
  o.update(kw)
  return o


def _params():
  return {"backbone": {"conv": {"kernel": jnp.full((3, 3, 2, 4), 1.0), "bias": jnp.full((4,), 1.0)},
                       "bn": {"scale": jnp.full((4,), 1.0)}},
          "head": {"kernel": jnp.full((4, 2), 1.0), "bias": jnp.full((2,), 1.0)}}


def _grads(params, value=0.5):
  return jax.tree.map(lambda p: jnp.full_like(p, value), params)


@pytest.mark.parametrize("name", optimizers.OPTIMIZERS)
def test_every_optimizer_builds_and_steps_downhill(name):
  tx, _ = optimizers.build_optimizer(_opt(name=name, learning_rate=0.1), total_steps=10)
  params = _params()
  state = tx.init(params)
  updates, _ = tx.update(_grads(params), state, params)
  new = optax.apply_updates(params, updates)
  for old, upd in zip(jax.tree.leaves(params), jax.tree.leaves(new)):
    assert np.all(np.asarray(upd) < np.asarray(old)), name  # positive gradient => decrease


def test_sgd_nesterov_matches_numpy():
  lr, mu = 0.1, 0.9
  tx, _ = optimizers.build_optimizer(_opt(name="sgd", learning_rate=lr, momentum=mu,
                                          nesterov=True), total_steps=10)
  p = {"w": jnp.array([1.0, -2.0])}
  state = tx.init(p)
  ref_p, ref_v = np.array([1.0, -2.0]), np.zeros(2)
  for g in ([0.5, 0.1], [0.2, -0.3], [1.0, 0.0]):
    upd, state = tx.update({"w": jnp.array(g)}, state, p)
    p = optax.apply_updates(p, upd)
    ref_v = mu * ref_v + np.array(g)
    ref_p = ref_p - lr * (np.array(g) + mu * ref_v)
  np.testing.assert_allclose(p["w"], ref_p, rtol=1e-6)


def test_weight_decay_mask_spares_biases_and_norms():
  mask = optimizers.weight_decay_mask(_params())
  assert mask["backbone"]["conv"]["kernel"] and mask["head"]["kernel"]
  assert not mask["backbone"]["conv"]["bias"] and not mask["backbone"]["bn"]["scale"]
  assert not mask["head"]["bias"]


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_weight_decay_only_moves_kernels_when_gradient_is_zero(name):
  tx, _ = optimizers.build_optimizer(_opt(name=name, learning_rate=0.1, weight_decay=0.5),
                                     total_steps=10)
  params = _params()
  upd, _ = tx.update(_grads(params, 0.0), tx.init(params), params)
  assert np.all(np.asarray(upd["backbone"]["conv"]["kernel"]) < 0)
  assert np.all(np.asarray(upd["head"]["kernel"]) < 0)
  for leaf in (upd["backbone"]["conv"]["bias"], upd["backbone"]["bn"]["scale"], upd["head"]["bias"]):
    np.testing.assert_array_equal(leaf, 0.0)


def test_freeze_by_regex_zeroes_updates_and_clipping_ignores_frozen():
  opt = _opt(name="sgd", learning_rate=1.0, momentum=0.0, freeze_regex="^backbone/",
             grad_clip_norm=1.0)
  tx, _ = optimizers.build_optimizer(opt, total_steps=10)
  params = _params()
  grads = _grads(params, 1.0)
  upd, _ = tx.update(grads, tx.init(params), params)
  for leaf in jax.tree.leaves(upd["backbone"]):
    np.testing.assert_array_equal(leaf, 0.0)
  # The clip norm is over the trainable head only: 8 + 2 ones -> norm sqrt(10).
  np.testing.assert_allclose(upd["head"]["kernel"], -1.0 / np.sqrt(10.0), rtol=1e-6)


def test_freeze_labels_and_extra_patterns():
  labels = optimizers.freeze_labels(_params(), regex=r"bn/scale$|^head/bias$")
  assert labels["backbone"]["bn"]["scale"] == "frozen" and labels["head"]["bias"] == "frozen"
  assert labels["backbone"]["conv"]["kernel"] == "trainable"
  tx, _ = optimizers.build_optimizer(_opt(name="sgd", momentum=0.0), total_steps=5,
                                     freeze_patterns=(r"^head/",))
  params = _params()
  upd, _ = tx.update(_grads(params), tx.init(params), params)
  np.testing.assert_array_equal(upd["head"]["kernel"], 0.0)
  assert np.all(np.asarray(upd["backbone"]["conv"]["kernel"]) < 0)


def test_warmup_cosine_schedule_matches_formula():
  sched = optimizers.build_schedule(_opt(learning_rate=1.0, warmup_steps=10, schedule="cosine",
                                         min_lr_fraction=0.1), total_steps=110)
  np.testing.assert_allclose(sched(0), 0.0, atol=1e-7)
  np.testing.assert_allclose(sched(5), 0.5, rtol=1e-6)
  for t in (10, 35, 60, 110):
    frac = (t - 10) / 100
    expected = 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * frac))
    np.testing.assert_allclose(sched(t), expected, rtol=1e-5)


def test_step_schedule_decays_at_fractions():
  sched = optimizers.build_schedule(_opt(learning_rate=1.0, schedule="step",
                                         step_boundaries=(0.5, 0.75), step_factor=0.1),
                                    total_steps=100)
  np.testing.assert_allclose([sched(49), sched(51), sched(76)], [1.0, 0.1, 0.01], rtol=1e-6)


@pytest.mark.parametrize("field,value,message", [("name", "lion", "unknown optimizer.name"),
                                                 ("schedule", "poly", "unknown optimizer.schedule")])
def test_unknown_names_are_errors(field, value, message):
  with pytest.raises(ValueError, match=message):
    optimizers.build_optimizer(_opt(**{field: value}), total_steps=10)
