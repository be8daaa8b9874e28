"""Seeded inputs and fixtures shared by the tests and the benchmarks (importable from both).

Importing it needs only NumPy (heavier imports wait inside the functions that need them): the
draws depend on the `np.random.Generator` passed in and on nothing else.
"""

import numpy as np


def random_boxes_xyxy(rng, shape, *, xy_range=(0.0, 100.0), wh_range=(1.0, 40.0), clip=None):
  """Boxes with top-left corners uniform in `xy_range` and sides uniform in `wh_range`.

  Args:
    rng: `np.random.Generator`.
    shape: number of boxes, or the leading shape of the box array.
    xy_range: (low, high) of x1 and y1.
    wh_range: (low, high) of width and height; low 0 gives degenerate boxes too.
    clip: if given, x2 and y2 are at most this value.

  Returns:
    float32 `[*shape, 4]` boxes (x1, y1, x2, y2).
  """
  shape = (shape,) if np.ndim(shape) == 0 else tuple(shape)
  xy = rng.uniform(*xy_range, shape + (2,))
  x2y2 = xy + rng.uniform(*wh_range, shape + (2,))
  if clip is not None:
    x2y2 = np.minimum(x2y2, clip)
  return np.concatenate([xy, x2y2], axis=-1).astype(np.float32)


def clustered_boxes_xyxy(rng, n, *, num_objects=5, center_range=(20.0, 80.0),
                         size_range=(10.0, 40.0), jitter=2.0, scale_range=(0.8, 1.2)):
  """Jittered copies of a few boxes, as raw detector outputs (long NMS suppression chains).

  Args:
    rng: `np.random.Generator`.
    n: number of boxes.
    num_objects: number of underlying objects.
    center_range: (low, high) of the objects' centres.
    size_range: (low, high) of the objects' sides.
    jitter: standard deviation of each copy's centre around its object's.
    scale_range: (low, high) of each copy's side scale relative to its object's.

  Returns:
    float32 `[n, 4]` boxes (x1, y1, x2, y2).
  """
  centers = rng.uniform(*center_range, (num_objects, 2))
  sizes = rng.uniform(*size_range, (num_objects, 2))
  which = rng.integers(0, num_objects, n)
  cxy = centers[which] + rng.normal(0, jitter, (n, 2))
  wh = sizes[which] * rng.uniform(*scale_range, (n, 2))
  return np.concatenate([cxy - wh / 2, cxy + wh / 2], axis=1).astype(np.float32)


# float32 machine epsilon (2^-23): the spacing of float32 numbers just above 1.
EPS32 = float(np.finfo(np.float32).eps)


def f32_atol(magnitude, *, ulps=8):
  """Absolute tolerance of a float32 computation whose operands are of size `magnitude`.

  Each float32 add, multiply or exp rounds by at most half a unit in the last place, i.e.
  `EPS32 / 2` times the size of its result; a short chain of such operations on values of size
  `magnitude` is off by at most a few units, `ulps * EPS32 * magnitude` (8 covers the box coders'
  and IoUs' chains of up to ~16 roundings). Divide by the size of a divisor that follows.

  Args:
    magnitude: scalar or array, the largest absolute operand of the computation.
    ulps: number of units in the last place allowed.

  Returns:
    float64 array (or scalar) of the same shape as `magnitude`.
  """
  return ulps * EPS32 * np.asarray(magnitude, np.float64)


def random_darknet_weights(rng, plan, *, header=(0, 2, 5, 0)):
  """A darknet `.weights` file's bytes for a `jaxdet.models.darknet_cfg.Plan`, with random
  values sized so that deep networks stay finite and unsaturated (kernels ~ N(0, 1/fan_in),
  BN scale and variance in [0.5, 1.5], biases and means ~ N(0, 0.1)).

  Args:
    rng: `np.random.Generator`.
    plan: the network (`darknet_cfg.plan`).
    header: (major, minor, revision, seen); `seen` is uint64 when major*10 + minor >= 2.

  Returns:
    bytes.
  """
  from jaxdet.models import darknet_cfg as dc  # pure Python
  major, minor, revision, seen = header
  out = [np.asarray([major, minor, revision], "<i4").tobytes(),
         np.asarray([seen], "<u8" if major * 10 + minor >= 2 else "<i4").tobytes()]
  for i, layer in enumerate(plan.layers):
    if not isinstance(layer, dc.Conv):
      continue
    f, cin = layer.filters, dc.in_channels(plan, i) // layer.groups
    blobs = [rng.normal(0, 0.1, f)]
    if layer.batch_normalize:
      blobs += [rng.uniform(0.5, 1.5, f), rng.normal(0, 0.1, f), rng.uniform(0.5, 1.5, f)]
    blobs.append(rng.normal(0, 1 / np.sqrt(cin * layer.size ** 2), f * cin * layer.size ** 2))
    out += [np.asarray(b, "<f4").tobytes() for b in blobs]
  return b"".join(out)


def write_split_proposals(path, dataset, split, data_dir, *, rng=None, jitter=0.0, num_random=0,
                          skip_ids=()):
  """Writes a proposals file (`jaxdet.data.proposals`) of a split: its ground-truth boxes,
  each corner moved by up to `jitter` x the box side, then `num_random` random boxes.

  Args:
    path: output `.npz`.
    dataset, split, data_dir: the TFDS split (e.g. `shapes/tiny`).
    rng: `np.random.Generator` (needed when `jitter` or `num_random`).
    jitter: relative corner noise.
    num_random: random boxes appended per image (inside the image).
    skip_ids: image ids to leave out of the file.

  Returns:
    `{image_id: boxes_xyxy [n, 4] float32}` as written (original pixels).
  """
  from jaxdet.data import proposals, sources, tfds_maps  # pylint: disable=g-import-not-at-top
  source, _ = sources.open_split(dataset, split, data_dir)
  table = {}
  for i in range(len(source)):
    ex = sources.record_to_example(tfds_maps.to_jaxdet_record(source[i], i))
    if int(ex["image_id"]) in skip_ids:
      continue
    boxes = np.asarray(ex["boxes"], np.float32).reshape(-1, 4)
    if jitter:
      wh = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
      boxes = boxes + rng.uniform(-jitter, jitter, boxes.shape) * wh
    h, w = (int(v) for v in ex["orig_size"])
    if num_random:
      side = float(min(h, w))
      extra = random_boxes_xyxy(rng, num_random, xy_range=(0.0, side / 2),
                                wh_range=(side / 16, side / 2), clip=side)
      boxes = np.concatenate([boxes, extra])
    table[int(ex["image_id"])] = boxes.astype(np.float32)
  proposals.write_proposals(path, list(table), list(table.values()))
  return table


# The photographs shipped with scikit-image (a dev dependency; nothing is downloaded), and
# generated sizes a real folder holds: a portrait, a tiny, a huge and a strip-like image.
PHOTOS = ("landscape", "odd", "portrait", "square", "tiny", "huge", "strip")


def photos(names=PHOTOS) -> dict[str, np.ndarray]:
  """Real photographs of many sizes and aspect ratios, uint8 RGB `[H, W, 3]`.

  `landscape`: skimage's coffee, 400 x 600; `odd`: chelsea, 300 x 451; `portrait`: the rocket
  turned upright, 640 x 427; `square`: the astronaut, 512 x 512; `tiny`: chelsea resized to
  16 x 20; `huge`: coffee resized to 2667 x 4000; `strip`: a 120 x 1000 band of the Hubble deep
  field (the PIL resizes are bilinear).

  Args:
    names: which of `PHOTOS`.

  Returns:
    dict name -> image, in the order of `names`.
  """
  import skimage.data  # pylint: disable=g-import-not-at-top  (a test-only dependency)
  from PIL import Image  # pylint: disable=g-import-not-at-top

  def resized(image, h, w):
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))

  make = {
      "landscape": skimage.data.coffee,
      "odd": skimage.data.chelsea,
      "portrait": lambda: np.ascontiguousarray(np.rot90(skimage.data.rocket())),
      "square": skimage.data.astronaut,
      "tiny": lambda: resized(skimage.data.chelsea(), 16, 20),
      "huge": lambda: resized(skimage.data.coffee(), 2667, 4000),
      "strip": lambda: np.ascontiguousarray(skimage.data.hubble_deep_field()[300:420]),
  }
  unknown = sorted(set(names) - set(make))
  if unknown:
    raise ValueError(f"unknown photos {unknown}; known: {PHOTOS}")
  return {name: make[name]() for name in names}


def write_classifier_folder(path, *, arch="resnet18", num_classes=3, image_size=64):
  """What `jaxdet convert torchvision --arch ARCH` writes for a classifier (model name
  `classifier`), with zero weights: the converter's own config and checkpoint writer.

  Returns:
    `path`, the folder written (`config.json`, `checkpoints/latest/0`).
  """
  import jax  # pylint: disable=g-import-not-at-top  (jaxdet.testing imports only NumPy)
  from jaxdet.convert import torchvision as tv_convert
  from jaxdet.convert.checkpoint import write_checkpoint
  from jaxdet.models import backbones
  config = tv_convert.classifier_config(arch, num_classes=num_classes, image_size=image_size)
  module = backbones.build_classifier(arch, num_classes, config=config.model)
  abstract = jax.eval_shape(lambda: module.init(
      jax.random.key(0), np.zeros((1, image_size, image_size, 3), np.float32)))
  variables = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract)
  write_checkpoint(path, config, variables, class_names=[str(i) for i in range(num_classes)],
                   source={"framework": "torchvision", "arch": arch})
  return path
