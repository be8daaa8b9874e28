"""The training state: a plain pytree carried through the jitted step and saved by Orbax."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a step reads and writes.

  Attributes:
    step: int32 [] number of optimizer updates applied so far.
    params: model parameters (float32).
    batch_stats: BatchNorm running statistics ({} for models without BatchNorm).
    opt_state: optax state for `params`.
    ema_params: exponential moving average of `params` (a copy of `params` when EMA is off).
    rng: uint32 [2] base PRNG key; the step uses `fold_in(rng, step)`.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  ema_params: Any
  rng: jax.Array


def init_variables(model, key: jax.Array, *, image_size: int,
                   external_proposals: bool = False) -> dict:
  """`model.init` on one zero image `[1,S,S,3]` float32 (jitted), in eval mode.

  Args:
    model: a Linen detector.
    key: uint32 [2] init key.
    image_size: S.
    external_proposals: the model runs on supplied proposals (Fast R-CNN): it is traced with one
      dummy proposal `[1,1,4]` (its variables do not depend on P).

  Returns:
    The variables (`params`, and `batch_stats` when the model has BatchNorm).
  """
  extra = ({"targets": {"proposals": jnp.zeros((1, 1, 4), jnp.float32)}}
           if external_proposals else {})
  # Jitted: eager init dispatches every small op separately (~10x slower for a CSP-Darknet).
  return jax.jit(lambda k: model.init(
      k, jnp.zeros((1, image_size, image_size, 3), jnp.float32), train=False, **extra))(key)


def create_train_state(model, tx: optax.GradientTransformation, *, rng: jax.Array,
                       image_size: int, params=None, batch_stats=None,
                       external_proposals: bool = False) -> TrainState:
  """Initializes a model and its optimizer state.

  Args:
    model: a Linen module called as `model.apply(variables, images [B,S,S,3] float32, train=...)`.
    tx: the optimizer.
    rng: uint32 [2] key; split into an init key and the state's base key.
    image_size: S, the square input size used to trace the init.
    params: optional parameters replacing the random init (e.g. restored).
    batch_stats: optional BatchNorm statistics replacing the init.
    external_proposals: a Fast R-CNN model (see `init_variables`).

  Returns:
    A `TrainState` at step 0.
  """
  init_rng, state_rng = jax.random.split(rng)
  variables = init_variables(model, init_rng, image_size=image_size,
                             external_proposals=external_proposals)
  params = variables["params"] if params is None else params
  batch_stats = variables.get("batch_stats", {}) if batch_stats is None else batch_stats
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                    opt_state=tx.init(params), ema_params=jax.tree.map(jnp.copy, params),
                    rng=state_rng)


def eval_variables(state: TrainState, *, use_ema: bool) -> dict:
  """`{"params", "batch_stats"}` for inference: EMA params when `use_ema`, else the raw params."""
  return {"params": state.ema_params if use_ema else state.params,
          "batch_stats": state.batch_stats}
