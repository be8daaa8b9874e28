"""The jitted train step on a tiny stand-in detector: learning, BatchNorm state, EMA, NaN guard,
and what the train-mode forward receives (targets, RNG streams)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import train_standins as si
from jaxdet.train import optimizers, sharding, state as state_lib, step as step_lib


def _setup(**opt_overrides):
  config = si.tiny_config(**{f"optimizer.{k}": v for k, v in opt_overrides.items()})
  tx, schedule = optimizers.build_optimizer(config.optimizer, total_steps=config.total_steps)
  model = si.TinyDetector()
  state = state_lib.create_train_state(model, tx, rng=jax.random.PRNGKey(0),
                                       image_size=si.IMAGE_SIZE)
  return config, model, tx, schedule, state


def _jitted(model, tx, schedule, **kw):
  mesh = sharding.make_mesh()
  return sharding.jit_step(step_lib.make_train_step(model=model, loss_fn=si.tiny_loss, tx=tx,
                                                    schedule=schedule, **kw), mesh), mesh


def _batch(step, mesh, batch_size=4):
  return sharding.shard_batch(step_lib.train_batch(si.make_batch(step, batch_size=batch_size)),
                              mesh)


def test_steps_reduce_loss_and_update_batch_stats():
  _, model, tx, schedule, state = _setup(learning_rate=0.05, warmup_steps=0)
  train_step, mesh = _jitted(model, tx, schedule)
  rng = jax.random.PRNGKey(1)
  stats0 = jax.device_get(state.batch_stats)
  fixed = _batch(0, mesh)
  losses = []
  for _ in range(8):
    state, metrics = train_step(state, fixed, rng)
    losses.append(float(metrics["loss"]))
    assert bool(metrics["finite"])
  assert int(state.step) == 8
  assert losses[-1] < 0.7 * losses[0], losses
  assert not np.allclose(jax.device_get(state.batch_stats)["backbone_bn"]["mean"],
                         stats0["backbone_bn"]["mean"])
  chex_like = jax.tree.map(lambda a: (a.shape, a.dtype), state.params)
  assert chex_like["cls_head"]["kernel"] == ((1, 1, 8, si.NUM_CLASSES), jnp.float32)
  for k in ("loss", "lr", "grad_norm", "box_loss", "cls_loss"):
    assert metrics[k].dtype == jnp.float32 and metrics[k].shape == ()


def test_nan_loss_keeps_previous_state():
  _, model, tx, schedule, state = _setup()
  train_step, mesh = _jitted(model, tx, schedule, inject_nan_at_step=1)
  rng = jax.random.PRNGKey(0)
  state, m0 = train_step(state, _batch(0, mesh), rng)
  assert bool(m0["finite"])
  before = jax.device_get(state)
  after, m1 = train_step(state, _batch(1, mesh), rng)
  assert not bool(m1["finite"]) and np.isnan(m1["loss"])
  after = jax.device_get(after)
  assert int(after.step) == 1
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    np.testing.assert_array_equal(a, b)


def test_ema_follows_the_warmed_up_decay():
  _, model, tx, schedule, state = _setup()
  train_step, mesh = _jitted(model, tx, schedule, ema_decay=0.99)
  rng = jax.random.PRNGKey(0)
  ema0 = jax.device_get(state.ema_params)
  state, _ = train_step(state, _batch(0, mesh), rng)
  d = min(0.99, 1 / 10)  # step 0 -> (1 + 0) / (10 + 0)
  expected = jax.tree.map(lambda e, p: d * e + (1 - d) * p, ema0, jax.device_get(state.params))
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(jax.device_get(state.ema_params))):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_step_key_is_fold_in_of_step():
  # Same state and batch, same rng => identical; the step count enters via fold_in.
  _, model, tx, schedule, state = _setup()
  train_step, mesh = _jitted(model, tx, schedule)
  s1, m1 = train_step(jax.tree.map(jnp.copy, state), _batch(0, mesh), jax.random.PRNGKey(3))
  s2, m2 = train_step(jax.tree.map(jnp.copy, state), _batch(0, mesh), jax.random.PRNGKey(3))
  np.testing.assert_array_equal(m1["loss"], m2["loss"])
  for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
    np.testing.assert_array_equal(a, b)


class _Recorder(nn.Module):
  """Returns what the train-mode forward received: the targets and a draw from each RNG stream."""

  @nn.compact
  def __call__(self, images, *, train, targets=None):
    w = self.param("w", nn.initializers.ones, ())
    out = {"w": w * jnp.mean(images), "num_targets": jnp.zeros(())}
    if train:
      out["num_targets"] = jnp.sum(targets["box_mask"]).astype(jnp.float32)
      out["box_sum"] = jnp.sum(jnp.where(targets["box_mask"][..., None], targets["boxes"], 0.))
      for stream in step_lib.RNG_STREAMS:
        out[stream] = jax.random.uniform(self.make_rng(stream), ())
    return out


def test_forward_gets_targets_and_per_step_rng_streams():
  model = _Recorder()
  tx = optax.sgd(0.1)
  state = state_lib.create_train_state(model, tx, rng=jax.random.PRNGKey(0),
                                       image_size=si.IMAGE_SIZE)
  loss_fn = lambda preds, batch: (preds["w"] ** 2, {k: v for k, v in preds.items() if k != "w"})
  train_step = jax.jit(step_lib.make_train_step(model=model, loss_fn=loss_fn, tx=tx,
                                                schedule=lambda step: 0.1))
  batch = step_lib.train_batch(si.make_batch(0, batch_size=4))
  s1, m1 = train_step(state, batch, jax.random.PRNGKey(3))
  _, m2 = train_step(s1, batch, jax.random.PRNGKey(3))
  mask = np.asarray(batch["box_mask"])
  assert float(m1["num_targets"]) == mask.sum() > 0
  np.testing.assert_allclose(m1["box_sum"], np.asarray(batch["boxes"])[mask].sum(), rtol=1e-6)
  draws = {k: (float(m1[k]), float(m2[k])) for k in step_lib.RNG_STREAMS}
  assert set(draws) == {"dropout", "sampler"}
  assert draws["dropout"][0] != draws["sampler"][0]  # independent streams
  assert all(a != b for a, b in draws.values())  # a new key each step (fold_in of the step)


def test_bfloat16_forward_keeps_float32_state():
  _, model, tx, schedule, state = _setup()
  train_step, mesh = _jitted(model, tx, schedule, compute_dtype="bfloat16")
  state, metrics = train_step(state, _batch(0, mesh), jax.random.PRNGKey(0))
  assert bool(metrics["finite"])
  for leaf in jax.tree.leaves((state.params, state.batch_stats, state.ema_params)):
    assert leaf.dtype == jnp.float32
  with pytest.raises(ValueError, match="compute_dtype"):
    step_lib.make_train_step(model=model, loss_fn=si.tiny_loss, tx=tx, schedule=schedule,
                             compute_dtype="float16")


def test_batch_must_split_over_devices_and_carry_train_keys():
  mesh = sharding.make_mesh()
  sharding.check_batch_size(4, mesh)
  with pytest.raises(KeyError, match="box_mask"):
    step_lib.train_batch({"image": 0, "boxes": 0, "classes": 0})
