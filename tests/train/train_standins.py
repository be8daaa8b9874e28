"""Tiny stand-ins for the model and data stages, so trainer tests stay fast and self-contained."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdet.train import config as config_lib

IMAGE_SIZE = 32
NUM_CLASSES = 3
MAX_BOXES = 4


class TinyDetector(nn.Module):
  """Conv + BatchNorm + 1x1 heads on a stride-8 grid: enough to exercise params and batch_stats."""
  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, images, *, train, targets=None):
    del targets  # The train step passes the batch's targets (the family contract); unused here.
    # No bias before BatchNorm: its true gradient is 0, and Adam would amplify the rounding noise.
    x = nn.Conv(8, (3, 3), strides=(8, 8), use_bias=False, name="backbone_conv")(images)
    x = nn.BatchNorm(use_running_average=not train, name="backbone_bn")(x)
    x = nn.relu(x)
    b = x.shape[0]
    return {"cls_logits": nn.Conv(self.num_classes, (1, 1), name="cls_head")(x).reshape(
                b, -1, self.num_classes),
            "box": nn.Conv(4, (1, 1), name="box_head")(x).reshape(b, -1, 4)}


def tiny_loss(preds, batch):
  """Every cell regresses the mean valid box and classifies its majority class (a smooth loss)."""
  mask = batch["box_mask"].astype(jnp.float32)
  n = jnp.maximum(mask.sum(1, keepdims=True), 1.)
  mean_box = (batch["boxes"] * mask[..., None]).sum(1) / n / IMAGE_SIZE
  counts = jax.nn.one_hot(batch["classes"], NUM_CLASSES) * mask[..., None]
  target = (counts.sum(1) > 0).astype(jnp.float32)
  box_loss = jnp.mean((preds["box"] - mean_box[:, None, :]) ** 2)
  cls_loss = jnp.mean(
      optax_bce(preds["cls_logits"], jnp.broadcast_to(target[:, None, :], preds["cls_logits"].shape)))
  loss = box_loss + cls_loss
  return loss, {"box_loss": box_loss, "cls_loss": cls_loss}


def optax_bce(logits, labels):
  return jnp.maximum(logits, 0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def tiny_decode(preds, *, image_size):
  boxes = jnp.clip(jax.nn.sigmoid(preds["box"]) * image_size, 0, image_size)
  boxes = jnp.concatenate([jnp.minimum(boxes[..., :2], boxes[..., 2:]),
                           jnp.maximum(boxes[..., :2], boxes[..., 2:])], -1)
  return boxes, jax.nn.sigmoid(preds["cls_logits"])


def make_batch(step: int, *, batch_size: int, seed: int = 0) -> dict:
  """A deterministic synthetic batch for `step` (depends only on seed and step)."""
  rng = np.random.default_rng([seed, step])
  xy = rng.uniform(0, IMAGE_SIZE / 2, (batch_size, MAX_BOXES, 2))
  wh = rng.uniform(2, IMAGE_SIZE / 2, (batch_size, MAX_BOXES, 2))
  n = rng.integers(0, MAX_BOXES + 1, batch_size)
  mask = np.arange(MAX_BOXES)[None, :] < n[:, None]
  return {
      "image": rng.normal(size=(batch_size, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32),
      "boxes": np.where(mask[..., None], np.concatenate([xy, xy + wh], -1), 0).astype(np.float32),
      "classes": np.where(mask, rng.integers(0, NUM_CLASSES, mask.shape), 0).astype(np.int32),
      "box_mask": mask,
      "image_id": np.arange(batch_size, dtype=np.int64) + step * batch_size,
  }


def interrupting(components, at_step):
  """Wraps `train_batches` so SIGINT arrives while the batch of `at_step` is being fetched."""
  import signal  # pylint: disable=g-import-not-at-top
  inner = components.train_batches

  def train_batches(start_step):
    for step, batch in enumerate(inner(start_step), start=start_step):
      if step == at_step:
        signal.raise_signal(signal.SIGINT)
      yield batch
  components.train_batches = train_batches
  return components


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  c = config_lib.base_config()
  c.image_size = IMAGE_SIZE
  c.max_boxes = MAX_BOXES
  c.batch_size = 4
  c.total_steps = 6
  c.log_every = 1
  c.eval_every = 0
  c.checkpoint.every = 2
  c.tensorboard = False
  c.optimizer.warmup_steps = 2
  c.optimizer.learning_rate = 1e-2
  c.model = ml_collections.ConfigDict({"name": "tiny"})
  for k, v in overrides.items():
    node = c
    *parents, leaf = k.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = v
  return c


def components(config):
  """`loop.Components` wired to the stand-ins (no eval data)."""
  from jaxdet.train import loop

  def train_batches(start_step):
    step = start_step
    while True:
      yield make_batch(step, batch_size=config.batch_size, seed=config.seed)
      step += 1

  def no_eval():
    raise AssertionError("evaluation is disabled in stand-in runs")

  return loop.Components(class_names=("a", "b", "c"), model=TinyDetector(), loss_fn=tiny_loss,
                         decode=tiny_decode, train_batches=train_batches, eval_batches=no_eval,
                         ground_truth=no_eval)
