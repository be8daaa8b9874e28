"""Drawing boxes with class names and saving image grids (PIL only)."""

import colorsys
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _colour(class_id):
  hue = (class_id * 0.61803398875) % 1.0  # golden-ratio hues stay distinct for many classes
  return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.9, 1.0))


def draw_detections(image_uint8, boxes_xyxy, classes, scores=None, *, class_names=None,
                    mask=None, line_width=2):
  """Draws boxes with class names (and scores) on a copy of an image.

  Args:
    image_uint8: ``[H, W, 3]`` uint8 image.
    boxes_xyxy: ``[N, 4]`` float boxes in pixels of this image.
    classes: ``[N]`` int class ids.
    scores: optional ``[N]`` float scores, printed after the name.
    class_names: optional sequence of names indexed by class id (ids shown otherwise).
    mask: optional ``[N]`` bool; False entries (padding) are not drawn.
    line_width: box outline width in pixels.

  Returns:
    ``[H, W, 3]`` uint8 image with the boxes drawn.
  """
  image = np.asarray(image_uint8)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
  boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
  classes = np.asarray(classes).reshape(-1)
  keep = np.ones(len(boxes), bool) if mask is None else np.asarray(mask, bool).reshape(-1)
  pil = Image.fromarray(np.ascontiguousarray(image.astype(np.uint8)))
  draw = ImageDraw.Draw(pil)
  font = ImageFont.load_default()
  for i in np.nonzero(keep)[0]:
    x0, y0, x1, y1 = boxes[i]
    if not np.all(np.isfinite(boxes[i])):
      continue
    cid = int(classes[i])
    colour = _colour(cid)
    draw.rectangle([x0, y0, max(x1 - 1, x0), max(y1 - 1, y0)], outline=colour, width=line_width)
    name = class_names[cid] if class_names is not None and 0 <= cid < len(class_names) else str(cid)
    text = name if scores is None else f"{name} {float(np.asarray(scores).reshape(-1)[i]):.2f}"
    tx0, ty0, tx1, ty1 = draw.textbbox((x0, y0), text, font=font)
    ty = max(y0 - (ty1 - ty0) - 2, 0)
    draw.rectangle([x0, ty, x0 + (tx1 - tx0) + 2, ty + (ty1 - ty0) + 2], fill=colour)
    draw.text((x0 + 1, ty), text, fill=(0, 0, 0), font=font)
  return np.asarray(pil)


def save_grid(images, path, *, columns=None, pad=2):
  """Tiles images into one grid PNG.

  Args:
    images: sequence (or ``[N, H, W, 3]`` array) of uint8 ``[H, W, 3]`` images; sizes may differ.
    path: output file (PNG recommended); parent folders are created.
    columns: images per row (default ``ceil(sqrt(N))``).
    pad: pixels of black between images.

  Returns:
    ``[GH, GW, 3]`` uint8 grid that was written.
  """
  images = [np.asarray(im, np.uint8) for im in images]
  if not images:
    raise ValueError("save_grid needs at least one image")
  columns = columns or int(math.ceil(math.sqrt(len(images))))
  rows = int(math.ceil(len(images) / columns))
  cell_h = max(im.shape[0] for im in images)
  cell_w = max(im.shape[1] for im in images)
  grid = np.zeros((rows * (cell_h + pad) + pad, columns * (cell_w + pad) + pad, 3), np.uint8)
  for i, im in enumerate(images):
    r, c = divmod(i, columns)
    y, x = pad + r * (cell_h + pad), pad + c * (cell_w + pad)
    grid[y:y + im.shape[0], x:x + im.shape[1]] = im[..., :3]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(grid).save(path)
  return grid
