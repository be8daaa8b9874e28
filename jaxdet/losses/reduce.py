"""Masked reductions. Detection losses sum over positives and divide by max(num_positives, 1).

Masking uses `jnp.where` (not multiplication) so that a non-finite value at a masked-out position
never leaks into the result; the loss primitives are finite everywhere, which keeps gradients
finite too.
"""

import jax.numpy as jnp


def masked_sum(values, mask):
  """Sum of `values` where `mask` is True.

  Args:
    values: float32 `[...]`.
    mask: bool (or float weights) broadcastable to `values`.

  Returns:
    float32 `[]`.
  """
  if mask.dtype == jnp.bool_:
    return jnp.sum(jnp.where(mask, values, 0.0))
  return jnp.sum(jnp.where(mask != 0, values * mask, 0.0))


def safe_normalizer(num_positives):
  """`max(num_positives, 1)` as float32, so empty ground truth divides by one, not zero.

  Args:
    num_positives: `[]` number (or soft sum) of positives.

  Returns:
    float32 `[]`.
  """
  return jnp.maximum(jnp.asarray(num_positives, jnp.float32), 1.0)


def normalized_sum(values, mask, *, num_positives):
  """`masked_sum(values, mask) / max(num_positives, 1)`.

  Args:
    values: float32 `[...]` unreduced loss.
    mask: bool or float weights broadcastable to `values`.
    num_positives: `[]` normalizer (count or soft sum of positives).

  Returns:
    float32 `[]`.
  """
  return masked_sum(values, mask) / safe_normalizer(num_positives)


def masked_mean(values, mask):
  """Mean of `values` over True entries of `mask` (0 when the mask is empty).

  Args:
    values: float32 `[...]`.
    mask: bool broadcastable to `values`.

  Returns:
    float32 `[]`.
  """
  mask = jnp.broadcast_to(mask, values.shape)
  return masked_sum(values, mask) / safe_normalizer(jnp.sum(mask))
