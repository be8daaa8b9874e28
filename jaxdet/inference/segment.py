"""`Segmenter`: a semantic segmentation model ready for inference (what `jaxdet.load` returns for
a config with `model.task == "segmentation"`, and what the exporter reads).

Masks: int32 class ids per pixel, 0 = background (class names include it: K = C + 1 names).
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

TASK = "segmentation"


@dataclasses.dataclass(frozen=True)
class Segmenter:
  """A segmentation model for inference.

  Attributes:
    model: the Linen module (`jaxdet.models.segmentation`).
    variables: `{"params", "batch_stats"}` (EMA params when trained with EMA).
    config: the resolved training config.
    class_names: K names indexed by mask value (0 = background).
    image_size: S, the square network input size.
    task: "segmentation".
  Normalization and resize rule: `config.model.preprocess` (`jaxdet.data.preprocess`).
  """
  model: Any
  variables: dict
  config: ml_collections.ConfigDict
  class_names: tuple[str, ...]
  image_size: int
  task: str = dataclasses.field(default=TASK, init=False)
  _logits_jit: Callable = dataclasses.field(init=False, repr=False, compare=False)

  def __post_init__(self):
    object.__setattr__(self, "_logits_jit", jax.jit(self._forward_with))

  def forward(self, images_uint8):
    """Normalize + model, pure and jit-able (closes over `variables`).

    Args:
      images_uint8: `[N, H, W, 3]` uint8 (S x S: images already resized by the model's rule).

    Returns:
      logits float32 `[N, H, W, K]` (the model's `out`).
    """
    return self._forward_with(self.variables, images_uint8)

  def _forward_with(self, variables, images_uint8):
    from jaxdet.data import preprocess
    images = preprocess.normalize_image(jnp.asarray(images_uint8),
                                        preprocess.of_model(self.config.get("model")))
    return self.model.apply(variables, images, train=False)["out"]

  def predict(self, images, probabilities: bool = False) -> dict[str, np.ndarray]:
    """Segments images of any size (the inputs of `jaxdet.predict_inputs`).

    An image that is not S x S is resized by the model's rule (top-left letterbox or stretch);
    the logits of its area are resized back to its pixels (bilinear, as torchvision's
    `F.interpolate(align_corners=False)`) before the argmax. An S x S image is used as it is:
    its mask is the argmax of `forward`, as in the exported ONNX graph.

    Args:
      images: uint8 RGB `[N, H, W, 3]` or one `[H, W, 3]` image, a PIL image, a path, or a list
        of these of mixed sizes.
      probabilities: also return the softmax of the logits.

    Returns:
      `{"masks": int32 [N, H, W]}` (+ `"probabilities"` float32 `[N, H, W, K]`); a list of
      images of different sizes gives lists of per-image arrays `[H_i, W_i]` instead.

    Raises:
      ValueError: an input is not an image (the message names it).
    """
    from jaxdet import predict_inputs
    from jaxdet.data import preprocess
    batch = predict_inputs.as_image_list(images)
    rule = preprocess.of_model(self.config.get("model")).resize
    inputs, scale, _ = predict_inputs.resize_batch(batch, self.image_size, rule)
    logits = np.asarray(jax.device_get(self._logits_jit(self.variables, inputs)), np.float32)
    masks, probs = [], []
    for image, row, (sx, sy) in zip(batch, logits, scale):
      h, w = image.shape[:2]
      if (h, w) == row.shape[:2]:
        masks.append(np.argmax(row, -1).astype(np.int32))
        if probabilities:
          probs.append(softmax(row))
      else:
        # The image's area of the input: all of it (stretch), or its top-left corner (letterbox).
        nh, nw = ((self.image_size, self.image_size) if rule == "stretch" else
                  (max(1, min(self.image_size, round(h * sy))),
                   max(1, min(self.image_size, round(w * sx)))))
        row = row[:nh, :nw]
        masks.append(resized_argmax(row, (h, w)))
        if probabilities:
          full = resize_logits(row, (h, w))
          probs.append(softmax(full, out=full))  # in place: one [H, W, K] buffer per photo
    same = len({m.shape for m in masks}) == 1
    # One image: a view, not a copy (a 6000 x 4000 photo's masks are 96 MB).
    stack = (lambda xs: xs[0][None] if len(xs) == 1 else np.stack(xs)) if same else list
    out = {"masks": stack(masks)}
    if probabilities:
      out["probabilities"] = stack(probs)
    return out


def resize_logits(logits, size):
  """`[h, w, K]` float32 -> `[H, W, K]` float32, bilinear with `align_corners=False` (NumPy).

  Separable, two taps per axis (the weights of `jaxdet.models.layers.resize_bilinear`'s
  matrices): each output pixel blends 2 x 2 source pixels, rows first then columns, in row
  chunks so that the temporaries stay small whatever `size`.
  """
  logits = np.asarray(logits, np.float32)
  rows, cols = _taps(logits.shape[0], size[0]), _taps(logits.shape[1], size[1])
  out = np.empty((size[0], size[1], logits.shape[2]), np.float32)
  for start, stop in _row_chunks(size[0], size[1] * logits.shape[2]):
    out[start:stop] = _blend_columns(_blend_rows(logits, rows, start, stop), cols)
  return out


def resized_argmax(logits, size):
  """`argmax(resize_logits(logits, size), -1)` as int32 `[H, W]`, without the `[H, W, K]` map.

  An output pixel blends its 2 x 2 source pixels with non-negative weights; where the four have
  the same argmax c, so has the blend (c is ahead of every class at each of them, hence in any
  convex combination), and the mask is c without computing its K logits. Only the pixels next to
  a class border of the source are interpolated, by the same float32 operations as
  `resize_logits`: the masks equal its argmax except where two classes tie within rounding.

  Args:
    logits: float32 `[h, w, K]`.
    size: (H, W) of the output.

  Returns:
    int32 `[H, W]`.
  """
  logits = np.asarray(logits, np.float32)
  (h, w, k), (height, width) = logits.shape, size
  rows, cols = _taps(h, height), _taps(w, width)
  labels = np.argmax(logits, -1).astype(np.int32)
  # Source cell (i, j): pixels i..i+1 x j..j+1 (the taps clamp i + 1 to h - 1: edge padding);
  # its label where the four agree, else -1. Output pixel (o, p) reads cell (r0[o], c0[p]):
  # the columns are looked up once per source row, then each output row copies its source row's.
  padded = np.pad(labels, ((0, 1), (0, 1)), mode="edge")
  agree = ((labels == padded[1:, :-1]) & (labels == padded[:-1, 1:])
           & (labels == padded[1:, 1:]))
  masks = np.where(agree, labels, -1)[:, cols[0]][rows[0]]
  for start, stop in _row_chunks(height, width * k):
    chunk = masks[start:stop]  # a view: written in place
    border = chunk < 0
    oi, pj = np.nonzero(border)
    if oi.size > border.size // 2:  # mostly borders: all columns (no index arrays)
      blended = _blend_columns(_blend_rows(logits, rows, start, stop), cols)
      np.copyto(chunk, np.argmax(blended, -1), casting="unsafe", where=border)
    elif oi.size:
      blended = _blend_rows(logits, rows, start, stop)  # [n, w, K]: cheap, w <= S
      c0, c1, cw0, cw1 = (a[pj] for a in cols)
      chunk[oi, pj] = np.argmax(blended[oi, c0] * cw0[:, None] + blended[oi, c1] * cw1[:, None],
                                -1)
  return masks


def softmax(logits, out=None):
  """Softmax over the last axis of float32 `[H, W, K]`, in row chunks (`out` may be `logits`:
  in place, no second `[H, W, K]` buffer for a large photo's map)."""
  out = np.empty(logits.shape, np.float32) if out is None else out
  for start, stop in _row_chunks(logits.shape[0], int(np.prod(logits.shape[1:]))):
    part = out[start:stop]
    np.subtract(logits[start:stop], logits[start:stop].max(-1, keepdims=True), out=part)
    np.exp(part, out=part)
    part /= part.sum(-1, keepdims=True)
  return out


# Floats per chunk of output rows (rows x W x K) in `resize_logits` / `resized_argmax` /
# `softmax`: 4 MB of float32 temporaries, whatever the photo (a 6000 x 4000 photo's map of 21
# classes is 2 GB).
_CHUNK_ELEMENTS = 1 << 20


def _row_chunks(height, row_elements):
  """`[(start, stop)]` output row ranges of at most `_CHUNK_ELEMENTS` floats (one row at least)."""
  step = max(1, _CHUNK_ELEMENTS // max(1, row_elements))
  return [(a, min(height, a + step)) for a in range(0, height, step)]


def _taps(size, out):
  """The two taps of `jaxdet.models.layers._bilinear_matrix(size, out)` (PyTorch's bilinear
  weights along one axis, `align_corners=False`): output i = w0[i] * input[i0[i]] + w1[i] *
  input[i1[i]], the same float32 weights as the matrix (vectorized: no loop over `out`).

  Returns:
    `(i0, i1, w0, w1)`: int64 `[out]` non-decreasing, i1 = min(i0 + 1, size - 1); float32
    `[out]`. Where both taps are one pixel (clamped at the border) w1 = 0 and w0 is the matrix's
    sum of the two, rounded as it does.
  """
  src = np.maximum((np.arange(out) + 0.5) * size / out - 0.5, 0.0)  # float64, as the matrix
  i0 = np.minimum(np.floor(src).astype(np.int64), size - 1)
  i1 = np.minimum(i0 + 1, size - 1)
  lam = src - i0
  w0 = (1.0 - lam).astype(np.float32)
  same = i0 == i1
  w0 = np.where(same, (w0 + lam).astype(np.float32), w0)  # float32 + float64 lam, then rounded
  w1 = np.where(same, 0.0, lam).astype(np.float32)
  return i0, i1, w0, w1


def _blend_rows(logits, rows, start, stop):
  """float32 `[stop - start, w, K]`: output rows `start:stop`, still at the source's width."""
  r0, r1, rw0, rw1 = (a[start:stop] for a in rows)
  return logits[r0] * rw0[:, None, None] + logits[r1] * rw1[:, None, None]


def _blend_columns(blended, cols):
  """float32 `[n, W, K]`: `_blend_rows`'s output resized to the output width (the same float32
  operations as `resized_argmax`'s pixel by pixel blend, so the same values bit for bit)."""
  c0, c1, cw0, cw1 = cols
  return blended[:, c0] * cw0[:, None] + blended[:, c1] * cw1[:, None]


def build_segmenter(config: ml_collections.ConfigDict, variables: dict | None,
                    class_names) -> Segmenter:
  """A `Segmenter` from a config (`model.task == "segmentation"`) and variables (None: random
  init from `config.seed`); `class_names`: K names, background first."""
  from jaxdet.inference.load import model_variables
  from jaxdet.models import segmentation
  class_names = tuple(str(c) for c in class_names)
  model = segmentation.build(config.model, num_classes=len(class_names))
  return Segmenter(model=model, variables=model_variables(model, variables, config),
                   config=config, class_names=class_names, image_size=int(config.image_size))


def overlay(image_uint8, mask, alpha=0.5):
  """`[H, W, 3]` uint8: the mask's colours (VOC's palette) blended over the image where it is not
  background (0); `jaxdet.data.draw.overlay_mask`."""
  from jaxdet.data.draw import overlay_mask  # pylint: disable=g-import-not-at-top
  return overlay_mask(image_uint8, mask, alpha=alpha)
