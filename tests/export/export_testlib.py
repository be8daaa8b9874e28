"""Export test helpers: the stand-in and zoo detectors, images, ONNX runners and matchers.

The NumPy reference of the post-processing lives in ``tests/models/models_testlib.py`` (shared
with the `jaxdet.models.postprocess` tests; ``conftest.py`` puts that folder on the path).
"""

import numpy as np

from models_testlib import postprocess_reference  # noqa: F401  (re-exported for the graph tests)


# --- A small stand-in detector (fast to export), decoded by the real `yolo_anchor_free.decode`.

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402

CLASS_NAMES = ("circle", "square", "triangle")


class TinyYolo(nn.Module):
  """Conv + BN + SiLU + max-pool net with the YOLO prediction dict (one stride-8 level)."""
  num_classes: int
  explicit_pool_padding: bool = False

  @nn.compact
  def __call__(self, images, *, train=False):
    from jaxdet.ops import anchors as anchor_ops
    x = images
    for i, features in enumerate((8, 16)):
      x = nn.Conv(features, (3, 3), strides=(2, 2), name=f"conv{i}")(x)
      x = nn.BatchNorm(use_running_average=not train, name=f"bn{i}")(x)
      x = nn.silu(x)
    if self.explicit_pool_padding:  # torchvision-style stem pool (jax2onnx mishandles it)
      x = nn.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    else:
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
                  pre_nms_top_k=200, seed=0, explicit_pool_padding=False, preprocess=None):
  """A `jaxdet.inference.load.Detector` around `TinyYolo` with random (spread) weights."""
  from jaxdet.inference.load import Detector
  model = TinyYolo(num_classes=len(CLASS_NAMES), explicit_pool_padding=explicit_pool_padding)
  variables = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, image_size, image_size, 3)))
  variables = spread_class_bias(variables)
  model_config = {"name": "yolo_anchor_free"}
  if preprocess is not None:  # `config.model.preprocess` (else the defaults, as old configs)
    model_config["preprocess"] = dict(preprocess)
  config = ml_collections.ConfigDict({"model": model_config, "image_size": image_size})
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


# --- The real zoo (random init): every registered family at its tiny `test_config()`.


def zoo_config(name, *, image_size=64, score_threshold=0.1, max_detections=30,
               pre_nms_top_k=300):
  """A training config: ``base_config`` + the family's ``test_config()`` as ``config.model``."""
  from jaxdet.models import registry
  from jaxdet.train import config as config_lib
  config = config_lib.base_config()
  config.model = registry.get(name).test_config()
  config.image_size = image_size
  config.postprocess.score_threshold = score_threshold
  config.postprocess.iou_threshold = 0.5
  config.postprocess.max_detections = max_detections
  config.postprocess.pre_nms_top_k = pre_nms_top_k
  return config


def _logits(scores):
  scores = np.clip(np.asarray(scores, np.float64), 1e-7, 1 - 1e-7)
  return np.log(scores / (1 - scores))


def _add_to_leaves(variables, paths, shift):
  """``variables`` with ``shift`` added to the params leaves at ``paths`` (a fresh nested copy)."""
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: x + shift if p in paths else x,
      jax.tree.map(lambda x: x, variables["params"]))
  return {**variables, "params": params}


def _variables_forward(detector, images):
  """``variables -> scores`` of ``detector`` on ``images``, jitted (one compile per detector)."""
  import dataclasses
  return jax.jit(lambda v: dataclasses.replace(detector, variables=v).forward(images)[1])


def class_bias_paths(detector, images, *, forward=None):
  """The params paths of the final class-logit biases (one per head, e.g. one per FPN level).

  Found by behaviour, not by name, so it works for any family: adding 1 to such a bias adds
  exactly 1 to the logits of the scores it feeds and leaves the others unchanged, and together
  they feed every score. Saturated scores (logit unmeasurable) are left out of the comparison.
  ``forward``: `_variables_forward(detector, images)` when the caller has it compiled already.
  """
  forward = forward or _variables_forward(detector, images)
  base = np.asarray(forward(detector.variables), np.float64)
  num_classes = len(detector.class_names)

  def logit_shift(paths):
    shifted = np.asarray(forward(_add_to_leaves(detector.variables, paths, np.float32(1))),
                         np.float64)
    live = (np.minimum(base, shifted) > 1e-5) & (np.maximum(base, shifted) < 1 - 1e-5)
    return (_logits(shifted) - _logits(base))[live]

  found = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(detector.variables["params"])[0]:
    if getattr(path[-1], "key", None) != "bias" or leaf.size % num_classes:
      continue
    shift = logit_shift([path])
    moved = np.abs(shift - 1) < 1e-2
    if moved.any() and np.all(moved | (np.abs(shift) < 1e-4)):
      found.append(path)
  shift = logit_shift(found) if found else np.zeros(0)
  if shift.size == 0 or not np.allclose(shift, 1, atol=1e-2):
    raise ValueError("no set of biases shifts every class logit alike; cannot calibrate scores")
  return found


def _background_bias(detector, forward):
  """(path, index) of a softmax background logit's bias: raising it lowers every positive score
  (found by behaviour, as `class_bias_paths`); None when there is none."""
  base = np.asarray(forward(detector.variables))
  live = base > 1e-6
  if not live.any():
    return None
  num_classes = len(detector.class_names)
  for path, leaf in jax.tree_util.tree_flatten_with_path(detector.variables["params"])[0]:
    if getattr(path[-1], "key", None) != "bias" or leaf.shape != (num_classes + 1,):
      continue
    for index in range(num_classes + 1):
      shifted = np.asarray(forward(_add_to_bias_entry(detector.variables, path, index, 1.0)))
      if np.all(shifted[live] < base[live]):
        return path, index
  return None


def _add_to_bias_entry(variables, path, index, shift):
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: x.at[index].add(shift) if p == path else x,
      jax.tree.map(lambda x: x, variables["params"]))
  return {**variables, "params": params}


def _calibrated_background_bias(detector, forward, found, *, threshold, fraction=0.3):
  """Bisection on the background bias (scores fall monotonically as it rises) until about
  ``fraction`` of the live (non-zero: a two-stage head has few RoIs, and zeroes the padding ones)
  candidates score >= ``threshold``."""
  import dataclasses
  path, index = found
  live = np.asarray(forward(detector.variables)) > 0
  lo, hi = -30.0, 30.0
  for _ in range(30):
    mid = 0.5 * (lo + hi)
    scores = np.asarray(forward(_add_to_bias_entry(detector.variables, path, index, mid)))
    if np.quantile(scores[live], 1 - fraction) >= threshold:
      lo = mid
    else:
      hi = mid
  return dataclasses.replace(
      detector, variables=_add_to_bias_entry(detector.variables, path, index, lo))


def calibrated(detector, images, *, fraction=0.04, threshold=0.1):
  """Shifts the final class biases so about ``fraction`` of candidates score >= ``threshold``.

  Random init puts scores anywhere (all near the prior, or saturated): parity at the score
  threshold would be vacuous. The biases are found by `class_bias_paths` (no per-family table);
  for objectness-style scores (YOLOv1/v3/v4), where no bias shifts a score's logit by exactly its
  own shift, by `score_bias_paths` with the shift found by bisection; for a softmax head with a
  background column, by shifting the background bias (Faster R-CNN's RoI head:
  `_background_bias`; dense heads such as SSD's: `_calibrated_softmax`).
  """
  import dataclasses
  forward = _variables_forward(detector, images)
  try:
    paths = class_bias_paths(detector, images, forward=forward)
  except ValueError:  # Scores that are not one logit's sigmoid.
    try:  # confidence x class probability (YOLOv1), objectness x class: biases raising scores
      paths = score_bias_paths(detector, forward)
    except ValueError:  # a softmax head: shifting all of its logits alike changes nothing
      found = _background_bias(detector, forward)
      if found is not None:
        return _calibrated_background_bias(detector, forward, found, threshold=threshold)
      return _calibrated_softmax(detector, forward, fraction=fraction, threshold=threshold)
    return _calibrated_by_bisection(detector, forward, paths, fraction=fraction,
                                    threshold=threshold)
  target, total = np.log(threshold / (1 - threshold)), 0.0
  for _ in range(8):  # Repeated: saturated scores show their logit only once shifted back.
    variables = _add_to_leaves(detector.variables, paths, np.float32(total))
    step = target - np.quantile(_logits(forward(variables)), 1 - fraction)
    if abs(step) < 1e-3:
      break
    total += step
  return dataclasses.replace(detector, variables=variables)


def _softmax_head_paths(detector, forward):
  """Bias paths of softmax class heads with the background first (`softmax_scores`' default
  layout, torchvision's): raising the background column of such a bias (every ``C + 1``-th entry)
  lowers every foreground score it moves."""
  c1 = len(detector.class_names) + 1
  base = np.asarray(forward(detector.variables), np.float64)
  found = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(detector.variables["params"])[0]:
    if getattr(path[-1], "key", None) != "bias" or leaf.size % c1:
      continue
    bump = np.zeros(leaf.shape, np.float32)
    bump.reshape(-1)[::c1] = 1.0
    changed = np.asarray(forward(_add_to_leaves(detector.variables, [path], bump)), np.float64)
    moved = np.abs(changed - base) > 0
    if moved.any() and np.all(changed[moved] < base[moved]):
      found.append(path)
  if not found:
    raise ValueError("no set of biases shifts every class logit alike (sigmoid) or lowers every "
                     "score through a background column (softmax); cannot calibrate scores")
  return found


def _calibrated_softmax(detector, forward, *, fraction, threshold):
  """Softmax heads (background first): their kernels and biases are scaled down to unsaturated
  logits, then the background column is shifted (bisection) so that about ``fraction`` of the
  foreground scores reach ``threshold``."""
  import dataclasses
  paths = _softmax_head_paths(detector, forward)
  c1 = len(detector.class_names) + 1
  kernels = [p[:-1] + (jax.tree_util.DictKey("kernel"),) for p in paths]

  def with_shift(shift, scale=0.05):
    params = jax.tree_util.tree_map_with_path(
        lambda p, x: x * scale if p in kernels else x, detector.variables["params"])
    variables = {**detector.variables, "params": params}
    out = variables
    for path in paths:
      leaf = _leaf(out["params"], path)
      bump = np.zeros(leaf.shape, np.float32)
      bump.reshape(-1)[::c1] = shift
      out = _add_to_leaves(out, [path], leaf * (scale - 1) + bump)
    return out

  lo, hi = -20.0, 20.0  # background shift: the quantile falls as it rises
  for _ in range(30):
    mid = 0.5 * (lo + hi)
    if np.quantile(np.asarray(forward(with_shift(mid))), 1 - fraction) > threshold:
      lo = mid
    else:
      hi = mid
  return dataclasses.replace(detector, variables=with_shift(0.5 * (lo + hi)))


def _leaf(params, path):
  for key in path:
    params = params[key.key]
  return params


def score_bias_paths(detector, forward):
  """The bias leaves whose +1 raises some scores and lowers none (for `calibrated` when no bias
  shifts the class logits alike: YOLOv1's confidence x class probability, objectness x class).
  ``forward(variables) -> scores`` is the detector's jitted forward on fixed images."""
  base = np.asarray(forward(detector.variables), np.float64)
  found = []
  for path, _ in jax.tree_util.tree_flatten_with_path(detector.variables["params"])[0]:
    if getattr(path[-1], "key", None) != "bias":
      continue
    moved = np.asarray(forward(_add_to_leaves(detector.variables, [path], np.float32(1))),
                       np.float64) - base
    if moved.min() >= -1e-6 and np.mean(moved > 1e-6) > 0.5:
      found.append(path)
  if not found:
    raise ValueError("no bias raises the scores monotonically; cannot calibrate scores")
  return found


def _calibrated_by_bisection(detector, forward, paths, *, fraction, threshold):
  """`detector` with the shift of the biases at ``paths`` (scores rise with it) that puts the
  ``1 - fraction`` quantile of the scores at ``threshold``, found by bisection."""
  import dataclasses
  lo, hi = -32.0, 32.0
  for _ in range(40):
    mid = (lo + hi) / 2
    scores = np.asarray(forward(_add_to_leaves(detector.variables, paths, np.float32(mid))))
    lo, hi = (mid, hi) if np.quantile(scores, 1 - fraction) < threshold else (lo, mid)
  return dataclasses.replace(detector,
                             variables=_add_to_leaves(detector.variables, paths, np.float32(hi)))


def random_variables(model, image_size, *, seed, targets=None):
  """He-normal kernels, small random biases and random BatchNorm statistics for ``model``.

  Shapes come from ``jax.eval_shape(model.init)`` (no compilation: compiling Flax's own init of
  a YOLO takes ~50 s on a loaded 2-core CPU). Random BN statistics make the export fold
  non-trivial normalizations. ``targets``: passed to the init (a Fast R-CNN model's proposals).
  """
  extra = {} if targets is None else {"targets": targets}
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                             jnp.zeros((1, image_size, image_size, 3)),
                                             train=False, **extra))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = getattr(path[-1], "key", "")
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      value = rng.normal(0, np.sqrt(2.0 / fan_in), leaf.shape)
    elif name == "scale":
      value = rng.uniform(0.5, 1.5, leaf.shape)
    elif name == "var":
      value = rng.uniform(0.5, 2.0, leaf.shape)
    else:  # bias, mean
      value = rng.normal(0, 0.1, leaf.shape)
    return jnp.asarray(value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, dict(shapes))


def zoo_detector(name, *, image_size=64, seed=0, **pp):
  """A registered family's detector (random init, calibrated threshold) via ``build_detector``."""
  from jaxdet import models
  from jaxdet.inference.load import build_detector
  config = zoo_config(name, image_size=image_size, **pp)
  model = models.build(config.model, num_classes=len(CLASS_NAMES))
  variables = random_variables(model, image_size, seed=seed)
  detector = build_detector(config, variables, CLASS_NAMES)
  images = shapes_images(4, image_size, image_size, seed=123)
  boxes, scores = (np.asarray(x) for x in jax.jit(detector.forward)(images))
  nonempty = (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
  if np.mean(scores > 0) < 0.1 or np.mean(nonempty) < 0.5:
    # Nearly every candidate removed or empty: He-normal regression weights make most boxes
    # degenerate (zero area once clipped: no detection), and a two-stage head drops boxes under
    # 0.01 px (as torchvision). The module's own init.
    variables = jax.jit(lambda x: model.init(jax.random.key(seed, impl="rbg"), x, train=False))(
        jnp.zeros((1, image_size, image_size, 3)))
    detector = build_detector(config, variables, CLASS_NAMES)
  return calibrated(detector, images)


def assert_same_detections(got, want, *, box_atol=0.5, score_atol=1e-4, min_score=0.1):
  """ONNX vs JAX detections: the same detections (class, box within 0.5 px, score within 1e-4).

  Detections are matched one to one, since XLA and onnxruntime round differently and may order
  two near-equal scores differently. Only a detection whose score lies within ``score_atol`` of
  the cut (``min_score``, or the last slot's score when all K slots are full) may lack a twin.
  Padding past ``num_detections`` must be zero.
  """
  k = want["scores"].shape[1]
  assert got["scores"].shape == want["scores"].shape
  for i in range(len(want["num_detections"])):
    sides = []
    for out in (got, want):
      n = int(out["num_detections"][i])
      assert not np.any(out["boxes"][i, n:]) and not np.any(out["scores"][i, n:])
      assert not np.any(out["classes"][i, n:])
      sides.append((np.asarray(out["boxes"][i, :n]), np.asarray(out["scores"][i, :n]),
                    np.asarray(out["classes"][i, :n])))
    cut = min_score
    for _, scores, _ in sides:
      if len(scores) == k:
        cut = max(cut, float(scores.min()))
    for (b1, s1, c1), (b2, s2, c2) in (sides, sides[::-1]):
      used = np.zeros(len(s2), bool)
      for j in range(len(s1)):
        twin = (~used & (c2 == c1[j]) & (np.abs(s2 - s1[j]) <= score_atol)
                & np.all(np.abs(b2 - b1[j]) <= box_atol, axis=-1))
        if twin.any():
          used[np.argmax(twin)] = True
        else:
          assert s1[j] < cut + score_atol, (
              f"image {i}: detection {j} (class {c1[j]}, score {s1[j]:.6f}, box {b1[j]}) has no "
              f"twin; scores {s2}, classes {c2}")


def run_onnx(model_or_path, images):
  """Runs an exported model with onnxruntime (CPU); returns outputs by name."""
  import onnxruntime as ort
  src = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
  session = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
  names = [o.name for o in session.get_outputs()]
  return dict(zip(names, session.run(None, {session.get_inputs()[0].name: images})))


def as_predict_dict(outputs):
  """ONNX detection outputs under `Detector.predict`'s keys."""
  return {"boxes": outputs["detection_boxes"], "scores": outputs["detection_scores"],
          "classes": outputs["detection_classes"], "num_detections": outputs["num_detections"]}
