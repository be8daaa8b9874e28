"""Drawing boxes with class names and saving image grids (PIL only).

Labels are set in Noto Sans CJK (the `noto-cjk-sans-otc` dependency: Latin, Hangul, kana and Han
in one font) so class names such as `고양이` render; without it, the first font known to
matplotlib's font manager (system fonts, then matplotlib's own DejaVu Sans) that has every glyph
of the label, else PIL's default font.
"""

import colorsys
import functools
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TILE_SIZE = 640  # grid cells: larger images are shrunk to fit (a 3000x2000 photo is not pasted)
# Training's `predictions.png`: network inputs (64-128 px) are enlarged to at least this side, so
# that boxes, labels and masks are readable (a 6-image grid of 128 px inputs was 392x262 px).
MIN_TILE = 384
TILE_FONT = 16  # label text of those tiles, in pixels (`label_size` gives 12 at 384 px)


def _colour(class_id):
  hue = (class_id * 0.61803398875) % 1.0  # golden-ratio hues stay distinct for many classes
  return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.9, 1.0))


@functools.lru_cache(maxsize=None)
def _font_files() -> tuple[tuple[str, int], ...]:
  """`(path, face index)` of the label fonts, in order of preference."""
  files = []
  try:
    import noto_cjk_sans_otc  # pylint: disable=g-import-not-at-top
    files.append((str(noto_cjk_sans_otc.FONT_PATH), 1))  # face 1: Noto Sans CJK KR
  except ImportError:
    pass
  try:
    from matplotlib import font_manager  # pylint: disable=g-import-not-at-top
    system = sorted({f.fname for f in font_manager.fontManager.ttflist},
                    key=lambda f: ("DejaVuSans.ttf" in f, f))  # DejaVu last: it lacks CJK
    files.extend((f, 0) for f in system if f.lower().endswith((".ttf", ".otf", ".ttc")))
  except ImportError:
    pass
  return tuple(files)


@functools.lru_cache(maxsize=None)
def _code_points(path: str, index: int) -> frozenset[int]:
  from fontTools import ttLib  # pylint: disable=g-import-not-at-top  (a matplotlib dependency)
  try:
    with ttLib.TTFont(path, fontNumber=index, lazy=True) as font:
      return frozenset(font.getBestCmap() or ())
  except Exception:  # pylint: disable=broad-except  (an unreadable system font is skipped)
    return frozenset()


def font_file_for(text: str) -> tuple[str, int] | None:
  """`(font path, face index)` of the first label font with a glyph for every character of
  `text` (spaces aside), or None when no font has them all."""
  needed = {ord(c) for c in text if not c.isspace()}
  for path, index in _font_files():
    if needed <= _code_points(path, index):
      return path, index
  return None


def _font(text: str, size: int):
  found = font_file_for(text)
  if found is None:
    try:
      return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1: one bitmap size
      return ImageFont.load_default()
  return _truetype(found[0], found[1], size)


@functools.lru_cache(maxsize=64)
def _truetype(path: str, index: int, size: int):
  """A loaded font face (cached by file and size, not by label: every `name score` label is a new
  text, and loading the face was a third of drawing a predictions grid)."""
  return ImageFont.truetype(path, size, index=index)


def label_size(height: int, width: int) -> tuple[int, int]:
  """`(font size, line width)` in pixels for an image, growing with its size (10 px text and
  2 px boxes up to ~330 px images; 75 px text and 8 px boxes for 3000x2000)."""
  side = (height + width) / 2
  return max(10, round(0.03 * side)), max(2, round(0.003 * side))


def draw_detections(image_uint8, boxes_xyxy, classes, scores=None, *, class_names=None,
                    mask=None, line_width=None, font_size=None):
  """Draws boxes with class names (and scores) on a copy of an image.

  Args:
    image_uint8: ``[H, W, 3]`` uint8 image.
    boxes_xyxy: ``[N, 4]`` float boxes in pixels of this image.
    classes: ``[N]`` int class ids.
    scores: optional ``[N]`` float scores, printed after the name.
    class_names: optional sequence of names indexed by class id (ids shown otherwise).
    mask: optional ``[N]`` bool; False entries (padding) are not drawn.
    line_width: box outline width in pixels (default: grows with the image, `label_size`).
    font_size: label text height in pixels (default: grows with the image, `label_size`).

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
  auto_font, auto_width = label_size(*image.shape[:2])
  line_width = auto_width if line_width is None else line_width
  font_size = auto_font if font_size is None else font_size
  for i in np.nonzero(keep)[0]:
    x0, y0, x1, y1 = boxes[i]
    if not np.all(np.isfinite(boxes[i])):
      continue
    cid = int(classes[i])
    colour = _colour(cid)
    draw.rectangle([x0, y0, max(x1 - 1, x0), max(y1 - 1, y0)], outline=colour, width=line_width)
    name = class_names[cid] if class_names is not None and 0 <= cid < len(class_names) else str(cid)
    text = name if scores is None else f"{name} {float(np.asarray(scores).reshape(-1)[i]):.2f}"
    font = _font(text, font_size)
    tx0, ty0, tx1, ty1 = draw.textbbox((x0, y0), text, font=font)
    ty = max(y0 - (ty1 - ty0) - 2, 0)
    tx = max(min(x0, image.shape[1] - (tx1 - tx0) - 2), 0)  # keep the label inside the image
    draw.rectangle([tx, ty, tx + (tx1 - tx0) + 2, ty + (ty1 - ty0) + 2], fill=colour)
    draw.text((tx + 1, ty - ty0 + y0), text, fill=(0, 0, 0), font=font)
  return np.asarray(pil)


def enlarge(image_uint8, min_size=MIN_TILE):
  """Enlarges a small image by nearest neighbour, by the integer factor that brings its longer
  side to at least `min_size` (pixels stay sharp: what the network saw; cheap: `np.repeat`).

  Args:
    image_uint8: `[H, W, C]` (or `[H, W]`) array.
    min_size: the longer side to reach.

  Returns:
    `(image [f H, f W, C], f)`, f >= 1 an int (the image itself when f = 1); a pixel coordinate
    x of the input is f x in the output.
  """
  image = np.asarray(image_uint8)
  factor = max(1, math.ceil(min_size / max(1, max(image.shape[:2]))))
  if factor == 1:
    return image, 1
  return np.repeat(np.repeat(image, factor, 0), factor, 1), factor


def detection_tile(image_uint8, boxes_xyxy, classes, scores=None, *, class_names=None,
                   mask=None, min_size=MIN_TILE):
  """`draw_detections` on the image enlarged to at least `min_size` (`enlarge`): a grid tile
  whose boxes and `name score` labels (at least `TILE_FONT` px) are readable.

  Args:
    image_uint8: `[H, W, 3]` uint8 (e.g. a network input).
    boxes_xyxy: `[N, 4]` float boxes in pixels of `image_uint8` (scaled with it).
    classes, scores, class_names, mask: as `draw_detections`.
    min_size: the tile's longer side, at least.

  Returns:
    `[f H, f W, 3]` uint8.
  """
  big, factor = enlarge(np.asarray(image_uint8, np.uint8), min_size)
  boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4) * factor
  return draw_detections(big, boxes, classes, scores, class_names=class_names, mask=mask,
                         font_size=max(TILE_FONT, label_size(*big.shape[:2])[0]))


def mask_tile(image_uint8, mask, class_names=None, *, min_size=MIN_TILE, alpha=0.5,
              max_legend=8):
  """The mask blended over the image (`overlay_mask`), enlarged to at least `min_size`
  (`enlarge`), with a legend in the top-left corner: a swatch of each class's colour and its
  name, the largest classes first (background and ignore left out; at most `max_legend`).

  Args:
    image_uint8: `[H, W, 3]` uint8.
    mask: `[H, W]` int class ids (0 background, 255 ignore).
    class_names: names indexed by class id (ids shown otherwise).

  Returns:
    `[f H, f W, 3]` uint8.
  """
  m = np.asarray(mask)
  tile, _ = enlarge(overlay_mask(image_uint8, m, alpha=alpha), min_size)
  ids, counts = np.unique(m[(m != 0) & (m != 255)], return_counts=True)
  shown = ids[np.argsort(-counts, kind="stable")][:max_legend]
  if not len(shown):
    return tile
  pil = Image.fromarray(np.ascontiguousarray(tile))
  draw = ImageDraw.Draw(pil)
  size = max(TILE_FONT, label_size(*tile.shape[:2])[0])
  y = 2
  for cid in shown:
    cid = int(cid)
    name = class_names[cid] if class_names is not None and 0 <= cid < len(class_names) else str(cid)
    font = _font(name, size)
    x0, y0, x1, y1 = draw.textbbox((0, 0), name, font=font)
    line = max(size, y1 - y0) + 4
    draw.rectangle([2, y, 2 + line + 4 + (x1 - x0) + 4, y + line], fill=(0, 0, 0))
    draw.rectangle([4, y + 2, 2 + line - 2, y + line - 2], fill=tuple(int(c) for c in
                                                                      MASK_PALETTE[cid % 256]))
    draw.text((2 + line + 4 - x0, y + (line - (y1 - y0)) // 2 - y0), name, fill=(255, 255, 255),
              font=font)
    y += line + 2
  return np.asarray(pil)


def fit_tile(image_uint8, tile_size=TILE_SIZE):
  """Shrinks an image to fit in `tile_size` x `tile_size` (aspect kept; never enlarged).

  Args:
    image_uint8: `[H, W, 3]` uint8.
    tile_size: the largest side of the result.

  Returns:
    `[h, w, 3]` uint8 with `max(h, w) <= tile_size` (the image itself when it already fits).
  """
  image = np.asarray(image_uint8, np.uint8)
  h, w = image.shape[:2]
  if max(h, w) <= tile_size:
    return image
  scale = tile_size / max(h, w)
  size = (max(1, round(w * scale)), max(1, round(h * scale)))
  return np.asarray(Image.fromarray(image[..., :3]).resize(size, Image.Resampling.LANCZOS))


def save_image(image_uint8, path):
  """Writes one `[H, W, 3]` uint8 image (PNG recommended); parent folders are created."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(np.asarray(image_uint8, np.uint8)).save(path)


def save_grid(images, path, *, columns=None, pad=2, tile_size=TILE_SIZE):
  """Tiles images into one grid PNG.

  Args:
    images: sequence (or ``[N, H, W, 3]`` array) of uint8 ``[H, W, 3]`` images; sizes may differ.
    path: output file (PNG recommended); parent folders are created.
    columns: images per row (default ``ceil(sqrt(N))``).
    pad: pixels of black between images.
    tile_size: images larger than this are shrunk to fit a `tile_size` square (`fit_tile`), so
      the grid stays at most `columns * (tile_size + pad)` wide; None keeps every image's size.

  Returns:
    ``[GH, GW, 3]`` uint8 grid that was written.
  """
  images = [np.asarray(im, np.uint8) for im in images]
  if tile_size is not None:
    images = [fit_tile(im, tile_size) for im in images]
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
  save_image(grid, path)
  return grid


def _voc_colour_map():
  """Pascal VOC's 256-entry palette (the devkit's ``labelcolormap``: the bits of the index spread
  over R, G, B from the high bit down); entry 255 (ignore) is white here."""
  cmap = np.zeros((256, 3), np.uint8)
  for i in range(256):
    c, rgb = i, [0, 0, 0]
    for j in range(8):
      for ch in range(3):
        rgb[ch] |= ((c >> ch) & 1) << (7 - j)
      c >>= 3
    cmap[i] = rgb
  cmap[255] = 255
  return cmap


MASK_PALETTE = _voc_colour_map()  # [256, 3] uint8: 0 black (background), 1 dark red, ...


def colorize_mask(mask):
  """Colours a class-id mask with VOC's palette (0 background black, 255 ignore white).

  Args:
    mask: ``[H, W]`` int class ids (values are taken modulo 256; 255 = ignore).

  Returns:
    ``[H, W, 3]`` uint8.
  """
  m = np.asarray(mask)
  if m.ndim != 2:
    raise ValueError(f"mask must be [H, W], got shape {m.shape}")
  return MASK_PALETTE[m.astype(np.int64) % 256]


def overlay_mask(image_uint8, mask, alpha=0.5):
  """Blends the coloured mask over an image where the mask is not background (0).

  Args:
    image_uint8: ``[H, W, 3]`` uint8.
    mask: ``[H, W]`` int class ids (255 = ignore, drawn white).
    alpha: weight of the mask colour in ``[0, 1]``.

  Returns:
    ``[H, W, 3]`` uint8.

  Raises:
    ValueError: the mask is not the image's size.
  """
  image = np.asarray(image_uint8, np.uint8)
  m = np.asarray(mask)
  if image.ndim != 3 or image.shape[-1] != 3 or m.shape != image.shape[:2]:
    raise ValueError(f"overlay_mask needs image [H, W, 3] and mask [H, W] of the same size, got "
                     f"{image.shape} and {m.shape}")
  blend = image.astype(np.float32) * (1 - alpha) + colorize_mask(m).astype(np.float32) * alpha
  out = np.where((m != 0)[..., None], np.round(blend), image)
  return out.astype(np.uint8)
