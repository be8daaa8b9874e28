"""Cross-entropy classification losses (unreduced)."""

import jax
import jax.numpy as jnp
import optax


def sigmoid_binary_cross_entropy(logits, targets):
  """Binary cross-entropy with logits, numerically stable (optax).

  Args:
    logits: float32 `[...]` raw scores.
    targets: float32 `[...]` in [0, 1], same shape (soft targets allowed).

  Returns:
    float32 `[...]` per-element loss, unreduced.
  """
  return optax.sigmoid_binary_cross_entropy(logits, targets.astype(logits.dtype))


def softmax_cross_entropy(logits, labels, *, label_smoothing=0.0):
  """Softmax cross-entropy with integer labels and optional label smoothing.

  Smoothing follows `torch.nn.functional.cross_entropy(label_smoothing=eps)`: the target is
  `(1 - eps) * one_hot + eps / C`.

  Args:
    logits: float32 `[..., C]` raw scores.
    labels: int32 `[...]` class indices in [0, C).
    label_smoothing: eps in [0, 1).

  Returns:
    float32 `[...]` per-example loss, unreduced.
  """
  num_classes = logits.shape[-1]
  targets = jax.nn.one_hot(labels, num_classes, dtype=logits.dtype)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)
