"""Shared by the detector tests: a few SGD steps on one fixed batch, returning the loss history."""

import jax
import optax

from jaxdet.train import step as step_lib


def sgd_loss_history(model, loss_fn, cfg, variables, images, batch, *, learning_rate, steps=10):
  """Runs `steps` jitted SGD-momentum steps of `loss_fn` on one batch.

  The train-mode forward gets the batch's targets and named RNG streams as the trainer passes them
  (`jaxdet.train.step`), with a new key each step.

  Args:
    model: the Linen detector.
    loss_fn: the detector module's `loss_fn(preds, batch, *, config)`.
    cfg: the config passed to `loss_fn`.
    variables: `{"params", "batch_stats"}`.
    images: `[B, S, S, 3]` float32 network input.
    batch: the target dict (`boxes`, `classes`, `box_mask`).
    learning_rate: SGD learning rate (momentum 0.9).
    steps: number of steps.

  Returns:
    list of `steps` Python floats, the loss before each update.
  """
  tx = optax.sgd(learning_rate, momentum=0.9)

  targets = {k: batch[k] for k in step_lib.TARGET_KEYS}

  @jax.jit
  def step(params, batch_stats, opt_state, key):
    def loss_of(p):
      preds, upd = model.apply({"params": p, "batch_stats": batch_stats}, images, train=True,
                               targets=targets, mutable=["batch_stats"],
                               rngs=step_lib.forward_rngs(key))
      return loss_fn(preds, batch, config=cfg)[0], upd["batch_stats"]
    (loss, batch_stats), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  params, stats = variables["params"], variables["batch_stats"]
  opt_state = tx.init(params)
  history = []
  for i in range(steps):
    params, stats, opt_state, loss = step(params, stats, opt_state,
                                          jax.random.fold_in(jax.random.key(0), i))
    history.append(float(loss))
  return history
