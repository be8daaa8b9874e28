"""Focal-family classification losses (unreduced, elementwise)."""

import jax
import jax.numpy as jnp
import optax


def sigmoid_focal_loss(logits, targets, *, alpha=0.25, gamma=2.0):
  """Sigmoid focal loss (Lin et al. 2017), torchvision.ops.sigmoid_focal_loss semantics.

  Args:
    logits: float32 `[...]` raw scores.
    targets: float32 `[...]` in [0, 1], same shape (soft targets allowed).
    alpha: weight of the positive term in (0, 1); a negative value disables the weighting.
    gamma: focusing exponent (0 gives plain binary cross-entropy).

  Returns:
    float32 `[...]` per-element loss, unreduced.
  """
  targets = targets.astype(logits.dtype)
  prob = jax.nn.sigmoid(logits)
  ce = optax.sigmoid_binary_cross_entropy(logits, targets)
  p_t = prob * targets + (1.0 - prob) * (1.0 - targets)
  loss = ce * (1.0 - p_t) ** gamma
  if alpha >= 0:
    loss = (alpha * targets + (1.0 - alpha) * (1.0 - targets)) * loss
  return loss


def varifocal_loss(logits, targets, *, alpha=0.75, gamma=2.0):
  """Varifocal loss (VarifocalNet, Zhang et al. 2021) with IoU-aware soft targets.

  Positives (target > 0) are weighted by their target (the IoU-like quality); negatives are
  down-weighted by `alpha * p**gamma`, so easy background contributes little.

  Args:
    logits: float32 `[...]` raw scores.
    targets: float32 `[...]` quality targets in [0, 1] (0 for background).
    alpha: weight of the negative term.
    gamma: focusing exponent of the negative term.

  Returns:
    float32 `[...]` per-element loss, unreduced.
  """
  targets = targets.astype(logits.dtype)
  prob = jax.nn.sigmoid(logits)
  weight = jnp.where(targets > 0, targets, alpha * jax.lax.stop_gradient(prob) ** gamma)
  return weight * optax.sigmoid_binary_cross_entropy(logits, targets)
