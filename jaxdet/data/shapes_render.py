"""Procedural rendering of one `shapes` image (NumPy + PIL only, so worker processes stay light).

Objects are flat, saturated shapes; the background is a desaturated smooth texture with fine noise
and grey distractor clutter (thin lines, dots, hollow outlines) that no class resembles. Objects
may overlap, but a placement that would hide more than ``1 - MIN_VISIBLE`` of any object (or push
more than that outside the frame) is rejected, so every visible shape is annotated and every box is
the tight box of the object's visible pixels.
"""

import colorsys
import io

import numpy as np
from PIL import Image, ImageDraw

CLASS_NAMES = ("circle", "square", "triangle", "star", "hexagon", "cross")
MIN_VISIBLE = 0.7  # fraction of an object's pixels that must stay visible
MIN_SIDE, MAX_SIDE = 16.0, 128.0  # object size range at 256 px (COCO small .. large)
MAX_OBJECTS = 15


def _unit_polygon(label):
  """Vertices ``[V, 2]`` (x, y) of a class outline inside the unit disk."""
  if label == 1:  # square
    return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * 0.8
  if label in (2, 4):  # triangle, hexagon
    n = 3 if label == 2 else 6
    a = np.pi / 2 + 2 * np.pi * np.arange(n) / n
    return np.stack([np.cos(a), -np.sin(a)], -1)
  if label == 3:  # five-pointed star
    a = np.pi / 2 + np.pi * np.arange(10) / 5
    r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
    return np.stack([r * np.cos(a), -r * np.sin(a)], -1)
  if label == 5:  # cross (plus sign)
    t = 0.33
    return np.array([[-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [t, t], [t, 1], [-t, 1],
                     [-t, t], [-1, t], [-1, -t], [-t, -t]], np.float64)
  raise ValueError(f"no polygon for label {label}")


def _object_mask(rng, label, size, aspect, cx, cy):
  """Rasterizes one object. Returns ``(mask [h, w] bool, x0, y0)`` (offset may be negative)."""
  rx, ry = size / 2 * np.sqrt(aspect), size / 2 / np.sqrt(aspect)
  if label == 0:
    x0, y0 = int(np.floor(cx - rx)), int(np.floor(cy - ry))
    w, h = int(np.ceil(cx + rx)) - x0, int(np.ceil(cy + ry)) - y0
    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).ellipse([cx - rx - x0, cy - ry - y0, cx + rx - x0 - 1, cy + ry - y0 - 1],
                                fill=1)
    return np.asarray(img, bool), x0, y0
  theta = np.deg2rad(rng.uniform(-25, 25))
  pts = _unit_polygon(label) * [rx, ry]
  rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
  pts = pts @ rot.T + [cx, cy]
  x0, y0 = np.floor(pts.min(0)).astype(int)
  x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
  img = Image.new("L", (int(x1 - x0), int(y1 - y0)), 0)
  ImageDraw.Draw(img).polygon([tuple(p) for p in (pts - [x0, y0])], fill=1)
  return np.asarray(img, bool), int(x0), int(y0)


def _background(rng, size):
  """Desaturated smooth texture ``[S, S, 3]`` float32."""
  hue, sat, val = rng.uniform(), rng.uniform(0, 0.2), rng.uniform(0.3, 0.8)
  base = np.array(colorsys.hsv_to_rgb(hue, sat, val), np.float32) * 255
  grid = rng.uniform(-40, 40, (6, 6)).astype(np.float32)
  texture = np.asarray(Image.fromarray(grid, "F").resize((size, size), Image.BICUBIC))
  return np.clip(base + texture[..., None], 0, 255)


def _draw_clutter(rng, draw, size):
  """Grey distractors: thin lines, small dots and hollow outlines."""
  for _ in range(rng.integers(2, 10)):
    grey = int(rng.integers(20, 236))
    kind = rng.integers(3)
    x, y = rng.uniform(0, size, 2)
    if kind == 0:
      dx, dy = rng.uniform(-size / 3, size / 3, 2)
      draw.line([x, y, x + dx, y + dy], fill=(grey,) * 3, width=int(rng.integers(1, 3)))
    elif kind == 1:
      r = rng.uniform(1, 3)
      draw.ellipse([x - r, y - r, x + r, y + r], fill=(grey,) * 3)
    else:
      r = rng.uniform(5, 25)
      draw.rectangle([x - r, y - r, x + r, y + r], outline=(grey,) * 3, width=1)


def semantic_mask(owner, labels):
  """Per-pixel class ids of a rendered image: 0 background, ``label + 1`` where a shape is visible.

  Args:
    owner: ``[S, S]`` int32, which object owns each pixel (-1: background), as ``render`` draws
      them (a later shape over an earlier one).
    labels: ``[n]`` int class ids of the objects.

  Returns:
    ``[S, S]`` uint8.
  """
  lut = np.concatenate([np.asarray(labels, np.int64).reshape(-1) + 1, [0]])
  return lut[owner].astype(np.uint8)  # owner -1 indexes the trailing 0


def render(seed, *, image_size=256, return_owner=False):
  """Renders one image from an integer seed sequence.

  Args:
    seed: anything ``np.random.default_rng`` accepts (e.g. ``[base_seed, split_id, index]``).
    image_size: side ``S`` of the square image.
    return_owner: also return the ``[S, S]`` int32 map of which object owns each pixel (-1:
      background), for tests.

  Returns:
    ``(image [S, S, 3] uint8, boxes_xyxy [n, 4] int64 pixel edges, labels [n] int64)``. Boxes are
    the tight box of each object's visible pixels: pixels ``xmin <= x < xmax``.
  """
  rng = np.random.default_rng(seed)
  s = image_size
  bg = Image.fromarray(_background(rng, s).astype(np.uint8))
  _draw_clutter(rng, ImageDraw.Draw(bg), s)
  canvas = np.asarray(bg).copy()
  owner = np.full((s, s), -1, np.int32)
  labels, colours, full_area, visible, regions = [], [], [], [], []
  n_target = int(rng.integers(0, MAX_OBJECTS + 1))
  for _ in range(3 * n_target):
    if len(labels) == n_target:
      break
    label = int(rng.integers(len(CLASS_NAMES)))
    size = np.exp(rng.uniform(np.log(MIN_SIDE), np.log(MAX_SIDE))) * s / 256
    aspect = np.exp(rng.uniform(np.log(0.7), np.log(1.4)))
    cx, cy = rng.uniform(0, s, 2)
    mask, x0, y0 = _object_mask(rng, label, size, aspect, cx, cy)
    area = int(mask.sum())
    # Clip the mask to the frame.
    ya, xa = max(y0, 0), max(x0, 0)
    yb, xb = min(y0 + mask.shape[0], s), min(x0 + mask.shape[1], s)
    if yb <= ya or xb <= xa or area == 0:
      continue
    m = mask[ya - y0:yb - y0, xa - x0:xb - x0]
    if m.sum() < MIN_VISIBLE * area:
      continue
    under = owner[ya:yb, xa:xb][m]
    hidden = np.bincount(under[under >= 0], minlength=len(labels))
    new_visible = np.asarray(visible, np.int64) - hidden[:len(labels)]
    if np.any(new_visible < MIN_VISIBLE * np.asarray(full_area)):
      continue
    k = len(labels)
    owner[ya:yb, xa:xb][m] = k
    visible = list(new_visible) + [int(m.sum())]
    full_area.append(area)
    labels.append(label)
    regions.append((ya, yb, xa, xb))
    hue = rng.uniform()
    colours.append(colorsys.hsv_to_rgb(hue, rng.uniform(0.65, 1.0), rng.uniform(0.6, 1.0)))
  boxes = np.zeros((len(labels), 4), np.int64)
  if labels:
    palette = (np.asarray(colours) * 255).astype(np.uint8)
    fg = owner >= 0
    canvas[fg] = palette[owner[fg]]
    for k, (ya, yb, xa, xb) in enumerate(regions):
      ys, xs = np.nonzero(owner[ya:yb, xa:xb] == k)
      boxes[k] = [xa + xs.min(), ya + ys.min(), xa + xs.max() + 1, ya + ys.max() + 1]
  noise = rng.integers(-6, 7, canvas.shape, dtype=np.int16)
  image = np.clip(canvas.astype(np.int16) + noise, 0, 255).astype(np.uint8)
  if return_owner:
    return image, boxes, np.asarray(labels, np.int64), owner
  return image, boxes, np.asarray(labels, np.int64)


def render_example(args):
  """Worker entry point: ``(seed, image_size, image_id) -> (image_id, tfds example dict)``.

  The image is JPEG-encoded here (quality 95), the ``segmentation/mask`` PNG-encoded, so that
  encoding runs in parallel workers.
  """
  from jaxdet.data import masks  # pylint: disable=g-import-not-at-top  (NumPy + PIL only)
  seed, image_size, image_id = args
  image, boxes, labels, owner = render(seed, image_size=image_size, return_owner=True)
  buf = io.BytesIO()
  Image.fromarray(image).save(buf, format="JPEG", quality=95)
  n = len(labels)
  bbox = (boxes[:, [1, 0, 3, 2]] / image_size).astype(np.float32)  # TFDS (ymin, xmin, ymax, xmax)
  return image_id, {
      "image": buf.getvalue(),
      "image/id": image_id,
      masks.MASK_FEATURE: masks.encode_mask(semantic_mask(owner, labels)),
      "objects": {
          "bbox": bbox.reshape(n, 4),
          "label": labels,
          "is_crowd": np.zeros(n, bool),
          "is_difficult": np.zeros(n, bool),
      },
  }
