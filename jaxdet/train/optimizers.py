"""Optax optimizers, learning-rate schedules, weight-decay masks and freezing, all from a config.

Expected `config.optimizer` fields (see `experiments/*.py`): `name` (sgd | adamw | adam | rmsprop |
adagrad | adadelta), `learning_rate`, `momentum`, `nesterov`, `b1`, `b2`, `eps`, `weight_decay`,
`grad_clip_norm` (0 disables), `schedule` (constant | cosine | step), `warmup_steps`,
`min_lr_fraction`, `step_boundaries` (fractions of `total_steps`), `step_factor`, `freeze_regex`
('' freezes nothing).
"""

import re

import jax
import ml_collections
import optax

OPTIMIZERS = ("sgd", "adamw", "adam", "rmsprop", "adagrad", "adadelta")
SCHEDULES = ("constant", "cosine", "step")


def build_schedule(opt: ml_collections.ConfigDict, *, total_steps: int) -> optax.Schedule:
  """Linear warmup from 0 followed by a constant, cosine or step-decay schedule.

  Args:
    opt: `config.optimizer`.
    total_steps: length of the run; cosine decays to `min_lr_fraction * learning_rate` at this step.

  Returns:
    `schedule(step int) -> float32 []`.
  """
  base, warmup = float(opt.learning_rate), int(opt.get("warmup_steps", 0))
  name = opt.get("schedule", "constant")
  if name not in SCHEDULES:
    raise ValueError(f"unknown optimizer.schedule {name!r}; choose one of {SCHEDULES}")
  decay_steps = max(int(total_steps) - warmup, 1)
  if name == "constant":
    main = optax.constant_schedule(base)
  elif name == "cosine":
    main = optax.cosine_decay_schedule(base, decay_steps, alpha=float(opt.get("min_lr_fraction", 0.)))
  else:
    # Boundaries are fractions of the whole run (like "decay at 2/3 and 8/9"), shifted past warmup.
    boundaries = {max(int(f * total_steps) - warmup, 1): float(opt.get("step_factor", 0.1))
                  for f in opt.get("step_boundaries", ())}
    main = optax.piecewise_constant_schedule(base, boundaries)
  if warmup <= 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0., base, warmup), main], [warmup])


def path_name(path) -> str:
  """`(DictKey('backbone'), DictKey('conv1'), DictKey('kernel'))` -> `'backbone/conv1/kernel'`."""
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def weight_decay_mask(params):
  """True for weights that get weight decay: kernels (ndim >= 2); False for biases and norm scales.

  Args:
    params: a parameter pytree.

  Returns:
    A pytree of bool with the structure of `params`.
  """
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def freeze_labels(params, *, regex: str):
  """Labels each parameter 'frozen' when its path (`a/b/kernel`) matches `regex`, else 'trainable'.

  Args:
    params: a parameter pytree.
    regex: Python regular expression searched in each path ('' freezes nothing).

  Returns:
    A pytree of str with the structure of `params`.
  """
  pattern = re.compile(regex) if regex else None
  return jax.tree_util.tree_map_with_path(
      lambda path, _: "frozen" if pattern and pattern.search(path_name(path)) else "trainable",
      params)


def build_optimizer(opt: ml_collections.ConfigDict, *, total_steps: int,
                    freeze_patterns: tuple[str, ...] = ()
                    ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Builds the optimizer described by `config.optimizer`.

  Gradient clipping and weight decay act only on trainable parameters; frozen ones (by
  `freeze_regex`) get zero updates and no optimizer state.

  Args:
    opt: `config.optimizer`.
    total_steps: run length for the schedule.
    freeze_patterns: more regexes to freeze besides `opt.freeze_regex` (e.g. the model's frozen
      BatchNorm parameters).

  Returns:
    `(transform, schedule)`.

  Raises:
    ValueError: unknown optimizer or schedule name.
  """
  name = opt.name
  if name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer.name {name!r}; choose one of {OPTIMIZERS}")
  schedule = build_schedule(opt, total_steps=total_steps)
  wd = float(opt.get("weight_decay", 0.))
  eps = float(opt.get("eps", 1e-8))
  chain = []
  if float(opt.get("grad_clip_norm", 0.)) > 0:
    chain.append(optax.clip_by_global_norm(float(opt.grad_clip_norm)))
  if name == "adamw":
    chain.append(optax.adamw(schedule, b1=opt.get("b1", 0.9), b2=opt.get("b2", 0.999), eps=eps,
                             weight_decay=wd, mask=weight_decay_mask))
  else:
    if wd > 0:  # Classic coupled L2 decay, added to the gradient before the update rule.
      chain.append(optax.add_decayed_weights(wd, mask=weight_decay_mask))
    if name == "sgd":
      chain.append(optax.sgd(schedule, momentum=opt.get("momentum", 0.9) or None,
                             nesterov=bool(opt.get("nesterov", False))))
    elif name == "adam":
      chain.append(optax.adam(schedule, b1=opt.get("b1", 0.9), b2=opt.get("b2", 0.999), eps=eps))
    elif name == "rmsprop":
      chain.append(optax.rmsprop(schedule, decay=0.9, eps=eps,
                                 momentum=opt.get("momentum", 0.) or None,
                                 nesterov=bool(opt.get("nesterov", False))))
    elif name == "adagrad":
      chain.append(optax.adagrad(schedule, eps=eps))
    else:
      chain.append(optax.adadelta(schedule, eps=eps))
  tx = optax.chain(*chain)
  regex = "|".join(f"(?:{r})" for r in (opt.get("freeze_regex", ""), *freeze_patterns) if r)
  if regex:
    tx = optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()},
                               lambda params: freeze_labels(params, regex=regex))
  return tx, schedule
