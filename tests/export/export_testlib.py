"""An independent NumPy reference of the DESIGN.md post-processing (plain loops, test-only)."""

import numpy as np


def _iou(a, b):
  """IoU of one xyxy box with one xyxy box, float64."""
  iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = iw * ih
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return inter / union if union > 0 else 0.0


def postprocess_reference(boxes, scores, *, score_threshold, iou_threshold, max_detections,
                          pre_nms_top_k):
  """Greedy class-aware NMS over the top-k (anchor, class) candidates of each image.

  Args:
    boxes: [N, A, 4] float xyxy.
    scores: [N, A, C] float.

  Returns:
    dict of num_detections [N], boxes [N, K, 4], scores [N, K], classes [N, K] (zero padded).
  """
  n, a, c = scores.shape
  k_out = max_detections
  out = dict(num_detections=np.zeros(n, np.int64), boxes=np.zeros((n, k_out, 4), np.float32),
             scores=np.zeros((n, k_out), np.float32), classes=np.zeros((n, k_out), np.int64))
  for i in range(n):
    flat = scores[i].reshape(-1)
    order = np.argsort(-flat, kind="stable")[:min(pre_nms_top_k, a * c)]
    cands = [(flat[j], j // c, j % c) for j in order if flat[j] >= score_threshold]
    kept = []
    for s, anchor, cls in cands:  # already in descending score, ties by index
      if len(kept) == k_out:
        break
      if all(kc != cls or _iou(boxes[i, anchor], boxes[i, ka]) <= iou_threshold
             for _, ka, kc in kept):
        kept.append((s, anchor, cls))
    out["num_detections"][i] = len(kept)
    for j, (s, anchor, cls) in enumerate(kept):
      out["boxes"][i, j] = boxes[i, anchor]
      out["scores"][i, j] = s
      out["classes"][i, j] = cls
  return out


# --- A small stand-in detector (fast to export), decoded by the real `jaxdet.models.yolo.decode`.

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402

CLASS_NAMES = ("circle", "square", "triangle")


class TinyYolo(nn.Module):
  """Conv + BN + SiLU + max-pool net with the YOLO prediction dict (one stride-8 level)."""
  num_classes: int

  @nn.compact
  def __call__(self, images, *, train=False):
    from jaxdet.ops import anchors as anchor_ops
    x = images
    for i, features in enumerate((8, 16)):
      x = nn.Conv(features, (3, 3), strides=(2, 2), name=f"conv{i}")(x)
      x = nn.BatchNorm(use_running_average=not train, name=f"bn{i}")(x)
      x = nn.silu(x)
    x = nn.max_pool(x, window_shape=(2, 2), strides=(2, 2), padding="VALID")
    cls = nn.Conv(self.num_classes, (1, 1), name="cls")(x)
    box = jax.nn.softplus(nn.Conv(4, (1, 1), name="box")(x)) * 8.0
    points, strides = anchor_ops.grid_points(images.shape[1:3], (8,))
    flat = lambda t: t.reshape(t.shape[0], -1, t.shape[-1])
    return {"cls_logits": flat(cls), "box_ltrb": flat(box), "points": jnp.asarray(points),
            "strides": jnp.asarray(strides)}


def spread_class_bias(variables, *, path=("cls",), value=-0.5):
  """Sets a classification bias so random-init scores spread over [0, 1] (not all ~0.01)."""
  params = jax.tree.map(lambda x: x, dict(variables["params"]))
  node = params
  for key in path[:-1]:
    node[key] = dict(node[key])
    node = node[key]
  node[path[-1]] = dict(node[path[-1]])
  node[path[-1]]["bias"] = jnp.full_like(node[path[-1]]["bias"], value)
  return {**variables, "params": params}


def tiny_detector(*, image_size=64, score_threshold=0.1, iou_threshold=0.5, max_detections=20,
                  pre_nms_top_k=200, seed=0):
  """A `jaxdet.train.load.Detector` around `TinyYolo` with random (spread) weights."""
  from jaxdet.train.load import Detector
  model = TinyYolo(num_classes=len(CLASS_NAMES))
  variables = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, image_size, image_size, 3)))
  variables = spread_class_bias(variables)
  config = ml_collections.ConfigDict({"model": {"name": "yolo"}, "image_size": image_size})
  pp = dict(score_threshold=score_threshold, iou_threshold=iou_threshold,
            max_detections=max_detections, pre_nms_top_k=pre_nms_top_k)
  return Detector(model=model, variables=dict(variables), config=config,
                  class_names=CLASS_NAMES, image_size=image_size, postprocess=pp)


def shapes_images(n, height, width, *, seed):
  """Validation-like images: a smooth background with filled circles, squares and triangles."""
  from PIL import Image, ImageDraw
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    base = rng.integers(0, 256, 3)
    grad = np.linspace(0, 60, width)[None, :, None]
    img = Image.fromarray(np.clip(base + grad + np.zeros((height, 1, 1)), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(1, 5)):
      s = rng.uniform(0.15, 0.45) * min(height, width)
      x0, y0 = rng.uniform(0, width - s), rng.uniform(0, height - s)
      colour = tuple(int(v) for v in rng.integers(0, 256, 3))
      kind = rng.integers(3)
      if kind == 0:
        draw.ellipse([x0, y0, x0 + s, y0 + s], fill=colour)
      elif kind == 1:
        draw.rectangle([x0, y0, x0 + s, y0 + s], fill=colour)
      else:
        draw.polygon([(x0, y0 + s), (x0 + s, y0 + s), (x0 + s / 2, y0)], fill=colour)
    out.append(np.asarray(img))
  return np.stack(out)
