"""The pure, jitted training step: forward, loss, gradients, optimizer, EMA, NaN guard."""

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxdet.train.state import TrainState

# Keys of an input-pipeline batch the step consumes; the rest (ids, sizes) stay on the host.
TRAIN_KEYS = ("image", "boxes", "classes", "box_mask")
# The batch's targets, also handed to the train-mode forward (a two-stage sampler needs them).
TARGET_KEYS = ("boxes", "classes", "box_mask")
# Passed on too when the batch has them: external proposals (faster_rcnn's Fast R-CNN mode).
# Inputs a batch may carry for the model: a Fast R-CNN's proposals, and the "rcnn"
# preprocessing's per-image extent (`image_hw`, evaluation batches: detections clip to it).
OPTIONAL_TARGET_KEYS = ("proposals", "proposal_mask", "image_hw")
# Named RNG streams of the train-mode forward, each split from the step key.
RNG_STREAMS = ("dropout", "sampler")


def forward_rngs(step_rng: jax.Array) -> dict[str, jax.Array]:
  """`{"dropout": key, "sampler": key}`: independent keys split from the step key."""
  return dict(zip(RNG_STREAMS, jax.random.split(step_rng, len(RNG_STREAMS))))


def ema_decay_at(step: jax.Array, *, decay: float) -> jax.Array:
  """EMA decay warmed up as min(decay, (1 + step) / (10 + step)) so early averages are not stale."""
  step = step.astype(jnp.float32)
  return jnp.minimum(decay, (1. + step) / (10. + step))


def _tree_select(pred: jax.Array, on_true, on_false):
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def make_train_step(*, model, loss_fn: Callable, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, ema_decay: float = 0.,
                    compute_dtype: str = "float32", inject_nan_at_step: int = -1) -> Callable:
  """Builds `train_step(state, batch, rng) -> (state, metrics)` (not yet jitted; see `jit_step`).

  The step is pure: BatchNorm statistics come in and go out through `state.batch_stats`, and the
  step key is `fold_in(rng, state.step)` (split into the forward's named RNG streams). When the loss or any gradient is not finite, the returned
  state is the input state unchanged and `metrics["finite"]` is False, so the caller can stop with
  the last good state.

  Args:
    model: Linen module; `model.apply(variables, images [B,S,S,3], train=True, targets=...,
      mutable=["batch_stats"], rngs=...)` returns a dict of raw predictions. `targets` are the
      batch's `boxes`, `classes` and `box_mask`; `rngs` the streams of `forward_rngs`.
    loss_fn: `loss_fn(preds, batch) -> (loss float32 [], metrics dict of float32 [])`.
    tx: the optimizer.
    schedule: learning-rate schedule, only for logging `lr`.
    ema_decay: EMA decay of parameters; 0 disables (EMA params then track params exactly).
    compute_dtype: "float32" or "bfloat16" (mixed precision: bf16 forward, float32 master
      weights, loss and optimizer).
    inject_nan_at_step: test hook; the loss at this step becomes NaN (-1 disables).

  Returns:
    `train_step(state: TrainState, batch: dict, rng: uint32 [2]) -> (TrainState, metrics)` where
    batch holds `image` float32 [B,S,S,3], `boxes` float32 [B,M,4] xyxy, `classes` int32 [B,M],
    `box_mask` bool [B,M]; metrics hold float32 [] `loss`, `lr`, `grad_norm`, bool [] `finite`
    and the loss function's own terms.
  """
  if compute_dtype not in ("float32", "bfloat16"):
    raise ValueError(f"compute_dtype must be 'float32' or 'bfloat16', got {compute_dtype!r}")
  dtype = jnp.dtype(compute_dtype)

  def cast(tree, to):
    return jax.tree.map(lambda x: x.astype(to) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                        tree)

  def train_step(state: TrainState, batch: dict, rng: jax.Array):
    step_rng = jax.random.fold_in(rng, state.step)

    def compute_loss(params):
      variables = {"params": cast(params, dtype), "batch_stats": state.batch_stats}
      # Only the target keys a batch has (a segmentation batch has none).
      targets = {k: batch[k] for k in TARGET_KEYS + OPTIONAL_TARGET_KEYS if k in batch}
      preds, updated = model.apply(variables, batch["image"].astype(dtype), train=True,
                                   targets=targets, mutable=["batch_stats"],
                                   rngs=forward_rngs(step_rng))
      loss, metrics = loss_fn(cast(preds, jnp.float32), batch)
      # Statistics keep the dtype of the state (bf16 forward must not downcast them).
      new_stats = jax.tree.map(lambda new, old: new.astype(old.dtype),
                               updated.get("batch_stats", {}), state.batch_stats)
      return loss, (metrics, new_stats)

    (loss, (metrics, batch_stats)), grads = jax.value_and_grad(compute_loss, has_aux=True)(
        state.params)
    loss = jnp.where(state.step == inject_nan_at_step, jnp.nan, loss)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if ema_decay > 0:
      d = ema_decay_at(state.step, decay=ema_decay)
      ema_params = jax.tree.map(lambda e, p: d * e + (1. - d) * p, state.ema_params, params)
    else:
      ema_params = params
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state, ema_params=ema_params)
    finite = jnp.isfinite(loss) & _all_finite(grads)
    new_state = _tree_select(finite, new_state, state)
    metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
    metrics.update(loss=loss.astype(jnp.float32), lr=jnp.asarray(schedule(state.step), jnp.float32),
                   grad_norm=optax.global_norm(grads).astype(jnp.float32), finite=finite)
    return new_state, metrics

  return train_step


def train_batch(batch: dict) -> dict:
  """The subset of an input-pipeline batch that the step consumes (`TRAIN_KEYS`, plus a
  segmentation batch's `mask` [B,S,S] int32: then the box keys are optional; plus the
  `OPTIONAL_TARGET_KEYS` a batch has: `proposals` [B,P,4] float32, `proposal_mask` [B,P] bool)."""
  needed = ("image",) if "mask" in batch else TRAIN_KEYS
  missing = [k for k in needed if k not in batch]
  if missing:
    raise KeyError(f"batch is missing {missing}; got keys {sorted(batch)}")
  return {k: batch[k] for k in TRAIN_KEYS + ("mask",) + OPTIONAL_TARGET_KEYS if k in batch}
