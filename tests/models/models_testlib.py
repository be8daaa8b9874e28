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
    batch: the target dict (`boxes`, `classes`, `box_mask`; or a segmentation `mask`).
    learning_rate: SGD learning rate (momentum 0.9).
    steps: number of steps.

  Returns:
    list of `steps` Python floats, the loss before each update.
  """
  tx = optax.sgd(learning_rate, momentum=0.9)

  # Detector batches carry box targets; a segmentation batch (`mask` only) has none.
  targets = {k: batch[k] for k in step_lib.TARGET_KEYS if k in batch} or None

  @jax.jit
  def step(params, batch_stats, opt_state, key):
    def loss_of(p):
      preds, upd = model.apply({"params": p, "batch_stats": batch_stats}, images, train=True,
                               targets=targets, mutable=["batch_stats"],
                               rngs=step_lib.forward_rngs(key))
      return loss_fn(preds, batch, config=cfg)[0], upd.get("batch_stats", {})
    (loss, batch_stats), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  params, stats = variables["params"], variables.get("batch_stats", {})  # none without BN
  opt_state = tx.init(params)
  history = []
  for i in range(steps):
    params, stats, opt_state, loss = step(params, stats, opt_state,
                                          jax.random.fold_in(jax.random.key(0), i))
    history.append(float(loss))
  return history


def numpy_variables(module, *args, seed=0, **kwargs):
  """He-normal kernels, zero biases, unit BatchNorm: `{"params", "batch_stats"}` of `module`
  for `module.init(key, *args, **kwargs)`, filled with NumPy (compiling `init`'s random
  initializers costs seconds a layer on a loaded CPU; `eval_shape` only traces)."""
  import flax
  rng = np.random.default_rng(seed)
  abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))

  def fill(path, leaf):
    name = path[-1]
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)).astype(leaf.dtype)
    value = 1.0 if name in ("scale", "var") else 0.0
    return np.full(leaf.shape, value, leaf.dtype)

  return {c: flax.traverse_util.unflatten_dict(
      {k: fill(k, v) for k, v in flax.traverse_util.flatten_dict(abstract[c]).items()})
          for c in ("params", "batch_stats") if c in abstract} | (
              {} if "batch_stats" in abstract else {"batch_stats": {}})


# --- An independent NumPy reference of the DESIGN.md post-processing (plain loops).

import numpy as np  # noqa: E402


def _iou(a, b):
  """IoU of one xyxy box with one xyxy box, float64."""
  iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = iw * ih
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return inter / union if union > 0 else 0.0


def postprocess_reference(boxes, scores, *, score_threshold, iou_threshold, max_detections,
                          pre_nms_top_k, pre_nms_top_k_per_level=False, level_sizes=None,
                          pre_nms_top_k_per_class=False):
  """Greedy class-aware NMS over the top-k (anchor, class) candidates of each image.

  Args:
    boxes: [N, A, 4] (class-agnostic) or [N, A, C, 4] (class-specific) float xyxy.
    scores: [N, A, C] float.
    pre_nms_top_k_per_level / level_sizes: top-k per level (anchors per level, in order of A),
      the levels' candidates concatenated in level order before the NMS sort.
    pre_nms_top_k_per_class: top-k anchors per class, concatenated in class order.

  Returns:
    dict of num_detections [N], boxes [N, K, 4], scores [N, K], classes [N, K] (zero padded).
  """
  n, a, c = scores.shape
  k_out = max_detections
  levels = list(level_sizes) if pre_nms_top_k_per_level else [a]
  out = dict(num_detections=np.zeros(n, np.int64), boxes=np.zeros((n, k_out, 4), np.float32),
             scores=np.zeros((n, k_out), np.float32), classes=np.zeros((n, k_out), np.int64))
  for i in range(n):
    cands, start = [], 0
    for cls in range(c) if pre_nms_top_k_per_class else ():
      order = np.argsort(-scores[i, :, cls], kind="stable")[:min(pre_nms_top_k, a)]
      cands += [(scores[i, j, cls], j, cls) for j in order]
    for size in levels if not pre_nms_top_k_per_class else ():
      flat = scores[i, start:start + size].reshape(-1)
      order = np.argsort(-flat, kind="stable")[:min(pre_nms_top_k, size * c)]
      cands += [(flat[j], start + j // c, j % c) for j in order]
      start += size
    box = (lambda anchor, cls: boxes[i, anchor]) if boxes.ndim == 3 else (
        lambda anchor, cls: boxes[i, anchor, cls])
    # A box of zero area is no detection (DESIGN.md's step 4).
    nonempty = lambda b: b[2] > b[0] and b[3] > b[1]
    cands = [t for t in cands if t[0] >= score_threshold and nonempty(box(t[1], t[2]))]
    cands.sort(key=lambda t: -t[0])  # stable: ties keep the candidate order
    kept = []
    for s, anchor, cls in cands:
      if len(kept) == k_out:
        break
      if all(kc != cls or _iou(box(anchor, cls), box(ka, kc)) <= iou_threshold
             for _, ka, kc in kept):
        kept.append((s, anchor, cls))
    out["num_detections"][i] = len(kept)
    for j, (s, anchor, cls) in enumerate(kept):
      out["boxes"][i, j] = box(anchor, cls)
      out["scores"][i, j] = s
      out["classes"][i, j] = cls
  return out


def random_detections(rng, *, n, a, c, class_specific=False, quantize=False, size=64.0):
  """Random raw detector outputs: boxes [n, a, 4] (or [n, a, c, 4]) xyxy inside [0, size] and
  scores [n, a, c] in [0, 1) (rounded to 0.1 steps with `quantize`: many exact ties)."""
  shape = (n, a, c) if class_specific else (n, a)
  xy = rng.uniform(0, size * 0.9, shape + (2,))
  wh = rng.uniform(1, size * 0.5, shape + (2,))
  boxes = np.clip(np.concatenate([xy, xy + wh], -1), 0, size).astype(np.float32)
  scores = rng.uniform(0, 1, (n, a, c)).astype(np.float32)
  if quantize:
    scores = (np.round(scores * 10) / 10).astype(np.float32)
  return boxes, scores
