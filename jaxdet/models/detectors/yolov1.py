"""YOLOv1 (Redmon et al. 2016, "You Only Look Once: Unified, Real-Time Object Detection").

One S x S grid (7 by default); every cell regresses B boxes (2), each with a confidence, and one
set of C class probabilities. Backbones: the paper's 24-conv network (`backbone="yolov1"`), its
9-conv "Fast YOLO" (`"yolov1_fast"`), or any zoo backbone (`jaxdet.models.backbones`, its `c5`).
Head as the paper (`head="fc"`): flatten -> FC `fc_hidden` (4096) -> leaky ReLU 0.1 -> dropout
0.5 -> FC S*S*(5B + C), linear. `head="conv"` (not the paper; many re-implementations) predicts
each cell from its own feature column instead: the feature map, average-pooled to S x S, -> 3x3
ConvBN `fc_hidden` + leaky ReLU -> dropout -> 1x1 conv to 5B + C; it learns far faster on a CPU
budget because nothing has to learn where a cell is.

Decisions (the paper leaves them open, or jaxdet needs them):
- BatchNorm after every convolution of the paper's backbones (as darknet's later `yolov1.cfg`;
  the paper predates BatchNorm and pretrained 20 layers on ImageNet instead).
- Outputs: `output_activation="linear"` is the paper's (and darknet's): every output is a plain
  regression trained with sum-squared error. `"logistic"` bounds them (sigmoid on confidence and
  the x, y cell offsets, softmax over the class probabilities, sigmoid on sqrt w, h); the loss is
  the same sum-squared error on the activated values. Decode clips confidence and class
  probabilities to [0, 1] (a no-op for "logistic"), so scores are probabilities.
- Zoo backbones give their `feature_level` map (`c5`, stride 32, or `c4`, stride 16).
- Flat FC output layout as darknet's detection layer, so darknet weights map without a permute:
  `[S*S*C class probs | S*S*B confidences | S*S*B*4 (x, y, sqrt w, sqrt h)]`, cells row-major.
- A cell holds one object: of several ground truths whose centres fall in one cell, the one of
  largest area (ties: the lower index) is that cell's; the others are not trained on.
- The loss is the paper's sum over cells and predictors, divided by the batch size (as darknet),
  not by the number of positives like the other families.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxdet.models.backbones import build_backbone
from jaxdet.models.conv import Conv
from jaxdet.models.layers import ConvBN, adaptive_avg_pool, max_pool
from jaxdet.models.postprocess import clip_boxes
from jaxdet.models.registry import model_config
from jaxdet.ops import box_iou

name = "yolov1"  # registered name: this file's name and `config.model.name`

PAPER_BACKBONES = ("yolov1", "yolov1_fast")
ACTIVATIONS = ("linear", "logistic")
HEADS = ("fc", "conv")

# The paper's network (its Figure 3): ("conv", filters, kernel, stride) or ("pool",) (2x2/2);
# 24 convolutions, stride 64 (448 px -> 7 x 7).
_YOLOV1_LAYERS = (
    ("conv", 64, 7, 2), ("pool",),
    ("conv", 192, 3, 1), ("pool",),
    ("conv", 128, 1, 1), ("conv", 256, 3, 1), ("conv", 256, 1, 1), ("conv", 512, 3, 1), ("pool",),
    *((("conv", 256, 1, 1), ("conv", 512, 3, 1)) * 4),
    ("conv", 512, 1, 1), ("conv", 1024, 3, 1), ("pool",),
    *((("conv", 512, 1, 1), ("conv", 1024, 3, 1)) * 2),
    ("conv", 1024, 3, 1), ("conv", 1024, 3, 2),
    ("conv", 1024, 3, 1), ("conv", 1024, 3, 1),
)
# Fast YOLO: 9 convolutions (the paper gives the count only; these widths are ours), stride 64.
_YOLOV1_FAST_LAYERS = (
    *(layer for f in (16, 32, 64, 128, 256, 512) for layer in (("conv", f, 3, 1), ("pool",))),
    ("conv", 1024, 3, 1), ("conv", 1024, 3, 1), ("conv", 256, 3, 1),
)
_LAYERS = {"yolov1": _YOLOV1_LAYERS, "yolov1_fast": _YOLOV1_FAST_LAYERS}


def default_config() -> ml_collections.ConfigDict:
  """Default `config.model` block: the paper's YOLOv1 (448 px, 7 x 7 grid, B = 2)."""
  c = ml_collections.ConfigDict()
  c.name = name
  c.backbone = "yolov1"  # "yolov1" | "yolov1_fast" | any zoo backbone ("resnet18", ...)
  c.width = 1.0  # channel multiplier of the paper's backbones (min 8 channels a layer)
  c.frozen_bn = False
  c.grid_size = 7  # S
  c.boxes_per_cell = 2  # B
  c.feature_level = "c5"  # zoo backbones: the feature map the head reads ("c4" | "c5")
  c.head = "fc"  # "fc" (paper) | "conv"
  c.fc_hidden = 4096  # units of the first FC ("fc"), channels of the 3x3 conv ("conv")
  c.dropout = 0.5
  c.output_activation = "linear"  # "linear" (paper) | "logistic"
  c.lambda_coord = 5.0
  c.lambda_noobj = 0.5
  c.rescore = True  # confidence target = IoU(pred, truth) as the paper; False: 1
  return c


def test_config() -> ml_collections.ConfigDict:
  """A tiny `config.model` for the contract and export tests (fast on CPU at 64 px)."""
  c = default_config()
  c.update(backbone="yolov1_fast", width=1 / 32, fc_hidden=32)
  return c


def _leaky(x):
  # jax.nn's (looked up at call time, not flax's alias) exports as ONNX LeakyRelu, which
  # onnxruntime fuses into the convolution (as darknet.py's).
  return jax.nn.leaky_relu(x, negative_slope=0.1)


class PaperBackbone(nn.Module):
  """The paper's YOLOv1 convolutions (or Fast YOLO's): ConvBN + leaky ReLU 0.1, 2x2 max-pools.

  `__call__(images float32 [B,H,W,3], *, train)` -> float32 `[B, ceil(H/64), ceil(W/64), F]`.
  """
  layers: tuple
  width: float = 1.0
  frozen_bn: bool = False

  @nn.compact
  def __call__(self, x, *, train):
    i = 0
    for layer in self.layers:
      if layer[0] == "pool":
        # Pad odd sides at the bottom/right so every pool halves with ceil (any input size).
        pad_h, pad_w = x.shape[1] % 2, x.shape[2] % 2
        if pad_h or pad_w:
          x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=-jnp.inf)
        x = max_pool(x, window=2, stride=2, padding=0)
        continue
      _, filters, kernel, stride = layer
      x = ConvBN(max(8, round(filters * self.width)), kernel, stride, act=_leaky,
                 frozen_bn=self.frozen_bn, name=f"conv{i}")(x, train=train)
      i += 1
    return x


class YOLOv1(nn.Module):
  """YOLOv1 detector.

  Attributes:
    num_classes: C.
    backbone: module mapping images to a feature map (`PaperBackbone`) or to the zoo's
      `{"c2".."c5"}` dict (its `c5` is used).
    grid_size: S.
    boxes_per_cell: B.
    fc_hidden: units of the first fully connected layer (channels of the conv head's 3x3).
    dropout: dropout rate after the first FC (train mode, RNG stream "dropout").
    output_activation: "linear" or "logistic" (module docstring).
    head: "fc" (the paper) or "conv" (module docstring).
    feature_level: the zoo backbone's feature the head reads ("c4" or "c5").

  `__call__(images float32 [B,H,W,3], *, train, targets=None)` returns a dict (`targets` unused:
  the assignment runs in the loss), cells row-major (index row * S + col):
    `class_probs` float32 `[B, S*S, C]`; `confidence` float32 `[B, S*S, B]`; `boxes` float32
    `[B, S*S, B, 4]` as (x, y) offsets of the centre in the cell (cell units) and (sqrt w,
    sqrt h) relative to the image; `image_hw` float32 `[2]`, the input (H, W) (a constant the
    loss needs to put the truth on the grid).
  """
  num_classes: int
  backbone: nn.Module
  grid_size: int = 7
  boxes_per_cell: int = 2
  fc_hidden: int = 4096
  dropout: float = 0.5
  output_activation: str = "linear"
  head: str = "fc"
  feature_level: str = "c5"

  @nn.compact
  def __call__(self, images, *, train, targets=None):
    del targets
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"images must be [B, H, W, 3], got {images.shape}")
    if self.output_activation not in ACTIVATIONS:
      raise ValueError(f"output_activation must be one of {ACTIVATIONS}, got "
                       f"{self.output_activation!r}")
    if self.head not in HEADS:
      raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
    feats = self.backbone(images, train=train)
    x = feats[self.feature_level] if isinstance(feats, dict) else feats
    s, nb, c = self.grid_size, self.boxes_per_cell, self.num_classes
    # A zoo backbone at the paper's 448 px gives 14 x 14: pool to at most S x S so the FC input
    # stays the paper's size (7 x 7 x channels).
    if x.shape[1] > s or x.shape[2] > s:
      x = adaptive_avg_pool(x, (min(s, x.shape[1]), min(s, x.shape[2])))
    n = x.shape[0]
    if self.head == "conv":
      if x.shape[1:3] != (s, s):
        raise ValueError(f"head='conv' needs a feature map of at least the grid, {s} x {s}; "
                         f"got {x.shape[1]} x {x.shape[2]} for input {images.shape[1:3]}")
      x = ConvBN(self.fc_hidden, 3, act=_leaky, name="conv1")(x, train=train)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = Conv(c + 5 * nb, (1, 1), name="conv2")(x).reshape(n, s * s, c + 5 * nb)
      # The FC head's flat layout (class probs | confidences | boxes), so one split serves both.
      out = jnp.concatenate([x[..., :c].reshape(n, -1), x[..., c:c + nb].reshape(n, -1),
                             x[..., c + nb:].reshape(n, -1)], axis=1)
    else:
      x = x.reshape(n, -1)
      x = _leaky(nn.Dense(self.fc_hidden, name="fc1")(x))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
      out = nn.Dense(s * s * (c + 5 * nb), name="fc2")(x)
    probs = out[:, :s * s * c].reshape(n, s * s, c)
    conf = out[:, s * s * c:s * s * (c + nb)].reshape(n, s * s, nb)
    boxes = out[:, s * s * (c + nb):].reshape(n, s * s, nb, 4)
    if self.output_activation == "logistic":
      probs = jax.nn.softmax(probs, axis=-1)
      conf = jax.nn.sigmoid(conf)
      boxes = jax.nn.sigmoid(boxes)
    return {"class_probs": probs, "confidence": conf, "boxes": boxes,
            "image_hw": jnp.asarray(images.shape[1:3], jnp.float32)}


def _get(config):
  d = default_config()
  return lambda k: config.get(k, d[k])


def build(config, *, num_classes) -> YOLOv1:
  """`YOLOv1` module from a `default_config()`-shaped ConfigDict."""
  get = _get(config)
  if config.backbone in PAPER_BACKBONES:
    backbone = PaperBackbone(_LAYERS[config.backbone], width=get("width"),
                             frozen_bn=bool(get("frozen_bn")), name="backbone")
  else:
    backbone = build_backbone(config)
  for key in ("grid_size", "boxes_per_cell", "fc_hidden"):
    if int(get(key)) < 1:
      raise ValueError(f"{name}: {key} must be >= 1, got {get(key)}")
  return YOLOv1(num_classes=num_classes, backbone=backbone, grid_size=int(get("grid_size")),
                boxes_per_cell=int(get("boxes_per_cell")), fc_hidden=int(get("fc_hidden")),
                dropout=float(get("dropout")), output_activation=get("output_activation"),
                head=get("head"), feature_level=get("feature_level"))


def _cell_offsets(grid_size):
  """`[S*S, 2]` float32 (col, row) of each cell, row-major."""
  idx = jnp.arange(grid_size * grid_size)
  return jnp.stack([idx % grid_size, idx // grid_size], axis=-1).astype(jnp.float32)


def boxes_from_cells(boxes, grid_size):
  """Cell-relative boxes to xyxy in image units (0..1).

  Args:
    boxes: float32 `[..., S*S, B, 4]` (x, y offsets in the cell, sqrt w, sqrt h of the image).
    grid_size: S.

  Returns:
    float32 `[..., S*S, B, 4]` xyxy, the image being [0, 1] x [0, 1].
  """
  centre = (_cell_offsets(grid_size)[:, None, :] + boxes[..., :2]) / grid_size
  half = jnp.square(boxes[..., 2:]) / 2
  return jnp.concatenate([centre - half, centre + half], axis=-1)


def decode(preds, *, image_size, config=None):
  """Boxes and class scores (confidence x class probability, the paper's test-time score).

  Args:
    preds: output dict of `YOLOv1.__call__`.
    image_size: int S (square input) or (H, W); boxes are scaled and clipped to it.
    config: the model config (unused: the grid size is read from the shapes).

  Returns:
    boxes_xyxy float32 `[B, S*S*B, 4]` input pixels (cell-major, then predictor), scores float32
    `[B, S*S*B, C]` in [0, 1] (confidence and class probabilities clipped to [0, 1]).
  """
  del config
  boxes = preds["boxes"].astype(jnp.float32)
  n, cells, nb, _ = boxes.shape
  grid = round(cells ** 0.5)
  h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
  xyxy = boxes_from_cells(boxes, grid) * jnp.asarray([w, h, w, h], jnp.float32)
  conf = jnp.clip(preds["confidence"].astype(jnp.float32), 0.0, 1.0)
  probs = jnp.clip(preds["class_probs"].astype(jnp.float32), 0.0, 1.0)
  scores = conf[..., None] * probs[:, :, None, :]
  return (clip_boxes(xyxy.reshape(n, cells * nb, 4), image_size=(h, w)),
          scores.reshape(n, cells * nb, -1))


def assign_cells(boxes_xyxy, box_mask, *, grid_size, image_size):
  """The ground truth of each cell: the one whose centre falls in it (largest if several).

  Args:
    boxes_xyxy: float32 `[B, M, 4]` input pixels.
    box_mask: bool `[B, M]`.
    grid_size: S.
    image_size: (H, W) of the input.

  Returns:
    `(gt_index int32 [B, S*S], has_object bool [B, S*S])`; gt_index is 0 where no object.
  """
  h, w = image_size
  cx = (boxes_xyxy[..., 0] + boxes_xyxy[..., 2]) / 2 / w
  cy = (boxes_xyxy[..., 1] + boxes_xyxy[..., 3]) / 2 / h
  col = jnp.clip(jnp.floor(cx * grid_size), 0, grid_size - 1).astype(jnp.int32)
  row = jnp.clip(jnp.floor(cy * grid_size), 0, grid_size - 1).astype(jnp.int32)
  cell = row * grid_size + col  # [B, M]
  area = ((boxes_xyxy[..., 2] - boxes_xyxy[..., 0]) * (boxes_xyxy[..., 3] - boxes_xyxy[..., 1]))
  in_cell = (cell[:, :, None] == jnp.arange(grid_size * grid_size)) & box_mask[:, :, None]
  key = jnp.where(in_cell, area[:, :, None], -jnp.inf)  # [B, M, S*S]
  # argmax takes the first maximum: equal areas go to the lower index.
  return jnp.argmax(key, axis=1).astype(jnp.int32), jnp.any(in_cell, axis=1)


def loss_fn(preds, batch, *, config):
  """The paper's sum-squared-error loss (its equation 3), summed and divided by the batch size.

  Per cell i with an object (`assign_cells`), the responsible predictor j is the one whose box has
  the highest IoU with the cell's truth (ties: the first). With 1obj_ij for it and 1noobj_ij for
  every other predictor (also in object cells):
    lambda_coord sum 1obj_ij [(x - x^)^2 + (y - y^)^2]                      `coord_xy_loss`
    lambda_coord sum 1obj_ij [(sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]  `coord_wh_loss`
    sum 1obj_ij (C - C^)^2, C^ = IoU(box, truth) (rescore) or 1          `obj_loss`
    lambda_noobj sum 1noobj_ij C^2                                        `noobj_loss`
    sum 1obj_i sum_c (p(c) - p^(c))^2, p^ one-hot                          `cls_loss`
  x, y are in cell units, w, h relative to the image.

  Args:
    preds: output dict of `YOLOv1.__call__` (train mode).
    batch: dict with `boxes` float32 `[B,M,4]` xyxy input pixels, `classes` int32 `[B,M]`,
      `box_mask` bool `[B,M]`.
    config: the model ConfigDict (`config.model`) or a full experiment config.

  Returns:
    `(loss [] float32, metrics)` with `loss`, the five terms above and `num_fg`.
  """
  cfg = model_config(config)
  get = _get(cfg)
  probs = preds["class_probs"].astype(jnp.float32)
  conf = preds["confidence"].astype(jnp.float32)
  boxes = preds["boxes"].astype(jnp.float32)
  n, cells, nb, _ = boxes.shape
  grid = round(cells ** 0.5)
  gt = batch["boxes"].astype(jnp.float32)
  image_hw = preds["image_hw"]
  gt_index, has_obj = assign_cells(gt, batch["box_mask"], grid_size=grid, image_size=image_hw)
  take = lambda x: jnp.take_along_axis(x, gt_index[..., None] if x.ndim == 3 else gt_index,
                                       axis=1)
  cell_gt = take(gt) / jnp.tile(image_hw[::-1], 2)  # [B, S*S, 4] image units
  cell_cls = take(batch["classes"])  # [B, S*S]
  centre = (cell_gt[..., :2] + cell_gt[..., 2:]) / 2
  size = jnp.maximum(cell_gt[..., 2:] - cell_gt[..., :2], 0.0)
  target_xy = centre * grid - _cell_offsets(grid)
  target_wh = jnp.sqrt(size)

  iou = box_iou(boxes_from_cells(boxes, grid), cell_gt[:, :, None, :])[..., 0]  # [B, S*S, B]
  iou = jax.lax.stop_gradient(iou)
  responsible = jax.nn.one_hot(jnp.argmax(iou, axis=-1), nb) * has_obj[..., None]  # [B,S*S,B]
  noobj = 1.0 - responsible

  sq = lambda d: jnp.sum(jnp.square(d), axis=-1)
  coord_xy = get("lambda_coord") * jnp.sum(responsible * sq(boxes[..., :2] -
                                                           target_xy[:, :, None]))
  coord_wh = get("lambda_coord") * jnp.sum(responsible * sq(boxes[..., 2:] -
                                                           target_wh[:, :, None]))
  conf_target = iou if get("rescore") else jnp.ones_like(iou)
  obj = jnp.sum(responsible * jnp.square(conf - conf_target))
  noobj_loss = get("lambda_noobj") * jnp.sum(noobj * jnp.square(conf))
  onehot = jax.nn.one_hot(cell_cls, probs.shape[-1])
  cls = jnp.sum(has_obj * sq(probs - onehot))

  terms = {"coord_xy_loss": coord_xy, "coord_wh_loss": coord_wh, "obj_loss": obj,
           "noobj_loss": noobj_loss, "cls_loss": cls}
  terms = {k: v / n for k, v in terms.items()}
  loss = sum(terms.values())
  return loss, {"loss": loss, **terms, "num_fg": jnp.sum(has_obj).astype(jnp.float32)}

