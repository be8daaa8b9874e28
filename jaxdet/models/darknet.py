"""Darknet-cfg-driven YOLO detectors (YOLOv3, YOLOv3-tiny/SPP, YOLOv4, YOLOv4-tiny).

One Flax module runs any cfg that `jaxdet.models.darknet_cfg.plan` accepts; the families
`yolov3` and `yolov4` (`jaxdet/models/detectors/`) differ in their default cfg and their loss:

- v3 (`loss="v3"`): each ground truth goes to its best anchor over all anchors of the cfg (by
  the IoU of centred width/height); BCE on the xy offsets (weighted 2 - w*h/S^2 as darknet),
  squared error on log(w / anchor); logistic objectness where predictions whose IoU with any
  ground truth exceeds the layer's `ignore_thresh` are left out; independent sigmoid classes.
- v4 (`loss="v4"`): CIoU on decoded boxes (with `scale_x_y`), and every anchor whose IoU with
  the ground truth exceeds the layer's `iou_thresh` is positive besides the best one; class
  targets smoothed by `label_smoothing` (darknet's `label_smooth_eps`: 1 -> 1 - eps/2, 0 -> eps/2).

Losses sum over anchors and divide by max(number of positives, 1). Targets are static: padded
ground truth (`box_mask`) is scattered into dense `[B, A]` arrays, so everything jits.

Predictions (`__call__`): `raw` `[B, A, 5 + C]` (tx, ty, tw, th, objectness, class logits per
anchor, A ordered by yolo layer, then row, column, anchor as OpenCV), and the per-anchor
constants `grid_xy` `[A, 2]` (cell column, row), `stride` `[A]`, `anchor_wh` `[A, 2]` (input
pixels), `scale_xy` `[A]`.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdet import losses
from jaxdet.models import darknet_cfg as dc
from jaxdet.models import layers as layers_lib
from jaxdet.models.conv import Conv
from jaxdet.models.postprocess import clip_boxes, objectness_scores
from jaxdet.models.registry import model_config
from jaxdet.ops import boxes as box_ops

# Darknet's BatchNorm divides by sqrt(var) + 1e-6; OpenCV's reader runs it as sqrt(var + 1e-6).
BN_EPSILON = 1e-6
# Darknet input: RGB pixels / 255, resized to the network size ignoring the aspect ratio.
PREPROCESS = {"value_range": 1.0, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),
              "resize": "stretch"}


def mish(x):
  """x * tanh(softplus(x)), with softplus as log1p(exp(-|x|)) + max(x, 0) (exports as ONNX ops)."""
  softplus = jnp.log1p(jnp.exp(-jnp.abs(x))) + jnp.maximum(x, 0.0)
  return x * jnp.tanh(softplus)


ACTIVATIONS = {
    "linear": lambda x: x,
    # jax.nn.leaky_relu (not a jnp.where) exports as ONNX LeakyRelu, which onnxruntime fuses
    # into the convolution; darknet's `x > 0 ? x : 0.1x` equals it (both 0 at 0).
    "leaky": lambda x: jax.nn.leaky_relu(x, 0.1),
    "relu": jax.nn.relu,
    "logistic": jax.nn.sigmoid,
    "mish": mish,
    "swish": lambda x: x * jax.nn.sigmoid(x),
    "tanh": jnp.tanh,
}


def base_config(name: str, cfg: str, loss: str) -> ml_collections.ConfigDict:
  """The `config.model` block shared by the `yolov3` and `yolov4` families."""
  c = ml_collections.ConfigDict()
  c.name = name
  c.cfg = cfg  # a built-in cfg (`darknet_cfg.builtin_names()`), used when cfg_text is empty
  c.cfg_text = ""  # a whole cfg file's text (converted or user networks); wins over `cfg`
  c.anchors = ""  # if set ("w1,h1, w2,h2, ..." input pixels): replaces every [yolo] anchors=
  c.width = 1.0  # filters of the convolutions not followed by a [yolo] scaled by this
  c.loss = loss  # "v3" | "v4"
  c.box_weight = 1.0 if loss == "v3" else 0.07 * 50  # v4: darknet's iou_normalizer 0.07 x ~50
  c.obj_weight = 1.0
  c.cls_weight = 1.0
  c.label_smoothing = 0.0 if loss == "v3" else 0.01
  c.frozen_bn = False
  c.preprocess = ml_collections.ConfigDict(PREPROCESS)
  return c


# A tiny network with every layer type but groups/route-groups and SPP pools (those are in
# TEST_CFG_V4): the contract tests' `test_config`, fast at 64 px.
TEST_CFG_V3 = """[net]
width=64
height=64
channels=3
[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky
[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky
[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky
[shortcut]
from=-2
activation=linear
[maxpool]
size=2
stride=2
[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky
[maxpool]
size=2
stride=1
[convolutional]
size=1
stride=1
pad=1
filters=24
activation=linear
[yolo]
mask=3,4,5
anchors=6,8, 12,14, 16,30, 30,24, 40,44, 60,56
classes=3
num=6
ignore_thresh=.7
[route]
layers=-3
[upsample]
stride=2
[route]
layers=-1,4
[convolutional]
size=1
stride=1
pad=1
filters=24
activation=linear
[yolo]
mask=0,1,2
anchors=6,8, 12,14, 16,30, 30,24, 40,44, 60,56
classes=3
num=6
ignore_thresh=.7
"""

TEST_CFG_V4 = """[net]
width=64
height=64
channels=3
[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=mish
[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky
[route]
layers=-1
groups=2
group_id=1
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
groups=2
activation=leaky
[route]
layers=-1,-2
[maxpool]
size=2
stride=2
[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=mish
[maxpool]
size=5
stride=1
[route]
layers=-1,-2
[convolutional]
size=1
stride=1
pad=1
filters=24
activation=linear
[yolo]
mask=3,4,5
anchors=6,8, 12,14, 16,30, 30,24, 40,44, 60,56
classes=3
num=6
scale_x_y=1.05
iou_thresh=0.213
ignore_thresh=.7
[route]
layers=-4
[upsample]
stride=2
[route]
layers=-1,5
[convolutional]
size=1
stride=1
pad=1
filters=24
activation=linear
[yolo]
mask=0,1,2
anchors=6,8, 12,14, 16,30, 30,24, 40,44, 60,56
classes=3
num=6
scale_x_y=1.1
iou_thresh=0.213
ignore_thresh=.7
"""


def cfg_text(config) -> str:
  """The cfg text of a model config: `cfg_text`, else the built-in `cfg`."""
  cfg = model_config(config)
  return cfg.get("cfg_text", "") or dc.builtin_text(cfg.cfg)


def plan_of(config, *, num_classes=None, image_size=None) -> dc.Plan:
  """The checked `darknet_cfg.Plan` of a model config (classes set to `num_classes`, and the
  config's `anchors` and `width` applied)."""
  cfg = model_config(config)
  sections = dc.parse_cfg(cfg_text(cfg))
  if cfg.get("anchors", ""):
    sections = dc.set_anchors(sections, cfg.anchors)
  if cfg.get("width", 1.0) != 1.0:
    sections = dc.scale_width(sections, cfg.width)
  return dc.plan(sections, image_size=image_size, num_classes=num_classes)


class Darknet(nn.Module):
  """A darknet network (`darknet_cfg.Plan.layers`) as Flax Linen.

  Parameters of darknet layer i live under `layer_{i}` (`conv` kernel [+ bias], `bn`), so the
  `.weights` reader and the model agree by index.

  `__call__(images float32 [B,S,S,3], *, train, targets=None)` -> the prediction dict of the
  module docstring (S: any size the cfg's strides divide).
  """
  layers: tuple
  frozen_bn: bool = False

  @nn.compact
  def __call__(self, images, *, train, targets=None):
    del targets  # assignment happens in the loss
    if images.ndim != 4:
      raise ValueError(f"images must be [B, H, W, C], got {images.shape}")
    outputs, heads = [], []
    x = images
    for i, layer in enumerate(self.layers):
      if isinstance(layer, dc.Conv):
        head = self.layers[i + 1] if i + 1 < len(self.layers) else None
        x = self._conv(layer, x, train=train, name=f"layer_{i}",
                       head=head if isinstance(head, dc.Yolo) else None)
      elif isinstance(layer, dc.Route):
        parts = []
        for j in layer.layers:
          src = outputs[j]
          n = src.shape[-1] // layer.groups
          parts.append(src[..., layer.group_id * n:(layer.group_id + 1) * n])
        x = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=-1)
      elif isinstance(layer, dc.Shortcut):
        x = ACTIVATIONS[layer.activation](x + outputs[layer.source])
      elif isinstance(layer, dc.Upsample):
        x = layers_lib.upsample_nearest(x, factor=layer.stride)
      elif isinstance(layer, dc.MaxPool):
        pad = ((0, 0), (layer.pad_before, layer.pad_after), (layer.pad_before, layer.pad_after),
               (0, 0))
        if layer.pad_before or layer.pad_after:
          x = jnp.pad(x, pad, constant_values=-jnp.inf)
        x = layers_lib.max_pool(x, window=layer.size, stride=layer.stride, padding=0)
      elif isinstance(layer, dc.Yolo):
        heads.append((layer, x))
      else:
        raise TypeError(f"layer {i}: unknown layer {layer!r}")
      outputs.append(x)
    return _head_outputs(heads, images.shape[1:3])

  def _conv(self, layer, x, *, train, name, head=None):
    k, p = layer.size, layer.pad
    bias_init = nn.initializers.zeros if head is None else _head_bias_init(head)
    conv = Conv(layer.filters, (k, k), strides=(layer.stride, layer.stride),
                padding=((p, p), (p, p)), use_bias=not layer.batch_normalize,
                feature_group_count=layer.groups, bias_init=bias_init, name=f"{name}_conv")
    y = conv(x)
    if layer.batch_normalize:
      y = nn.BatchNorm(use_running_average=(not train) or self.frozen_bn,
                       momentum=layers_lib.BN_MOMENTUM, epsilon=BN_EPSILON,
                       name=f"{name}_bn")(y)
    return ACTIVATIONS[layer.activation](y)


def _head_bias_init(yolo, prior=0.01):
  """Initial biases of the convolution before a `[yolo]`: objectness and class logits at
  `prior` (training from scratch starts with few confident boxes, as RetinaNet's prior), box
  offsets at 0. Converted weights replace them."""
  logit = -math.log((1 - prior) / prior)

  def init(key, shape, dtype=jnp.float32):
    del key
    per_anchor = np.zeros(yolo.classes + 5, np.float32)
    per_anchor[4:] = logit
    return jnp.asarray(np.tile(per_anchor, len(yolo.anchors)), dtype).reshape(shape)
  return init


def _head_outputs(heads, input_hw):
  """Flattens each yolo layer's `[B,h,w,na*(5+C)]` map to `[B, h*w*na, 5+C]` (row, column,
  anchor order) and builds the per-anchor constants."""
  raws, grid, stride, anchor, scale = [], [], [], [], []
  for layer, x in heads:
    b, h, w, _ = x.shape
    na = len(layer.anchors)
    raws.append(x.reshape(b, h * w * na, -1))
    gy, gx, _ = np.meshgrid(np.arange(h), np.arange(w), np.arange(na), indexing="ij")
    grid.append(np.stack([gx, gy], -1).reshape(-1, 2))
    stride.append(np.full((h * w * na, 2), [input_hw[1] / w, input_hw[0] / h]))
    anchor.append(np.tile(np.asarray(layer.anchors, np.float32), (h * w, 1)))
    scale.append(np.full(h * w * na, layer.scale_x_y))
  cat = lambda parts: jnp.asarray(np.concatenate(parts).astype(np.float32))
  return {"raw": jnp.concatenate(raws, axis=1), "grid_xy": cat(grid), "stride": cat(stride),
          "anchor_wh": cat(anchor), "scale_xy": cat(scale)}


def build(config, *, num_classes) -> Darknet:
  """The `Darknet` module of a model config, its `[yolo]` layers set to `num_classes` classes."""
  cfg = model_config(config)
  p = plan_of(cfg, num_classes=num_classes)
  return Darknet(layers=p.layers, frozen_bn=cfg.get("frozen_bn", False))


def level_sizes(config, image_size):
  """Anchors per yolo layer at input S (the order of A)."""
  p = plan_of(config, image_size=image_size)
  return tuple(p.shapes[i][0] * p.shapes[i][1] * len(p.layers[i].anchors)
               for i in p.yolo_indices)


def _decode_boxes(preds, raw):
  """`[B, A, 4]` xyxy input pixels of raw outputs: sigmoid offsets with scale_x_y, exp sizes."""
  scale = preds["scale_xy"][:, None]
  xy = (jax.nn.sigmoid(raw[..., 0:2]) * scale - 0.5 * (scale - 1.0) + preds["grid_xy"])
  xy = xy * preds["stride"]
  wh = jnp.exp(raw[..., 2:4]) * preds["anchor_wh"]
  return jnp.concatenate([xy - 0.5 * wh, xy + 0.5 * wh], axis=-1)


def decode(preds, *, image_size, config=None):
  """Boxes and scores of a darknet detector before NMS.

  Args:
    preds: output dict of `Darknet.__call__`.
    image_size: int S (or (H, W)); boxes are clipped to it.
    config: unused (everything is in `preds`).

  Returns:
    boxes_xyxy float32 `[B,A,4]` input pixels, scores float32 `[B,A,C]` =
    sigmoid(objectness) x sigmoid(class logit).
  """
  del config
  raw = preds["raw"].astype(jnp.float32)
  boxes = _decode_boxes(preds, raw)
  return clip_boxes(boxes, image_size=image_size), objectness_scores(raw[..., 4], raw[..., 5:])


def _wh_iou(wh1, wh2):
  """IoU of boxes with the same centre: `[..., 2] x [..., 2] -> [...]`."""
  inter = jnp.minimum(wh1[..., 0], wh2[..., 0]) * jnp.minimum(wh1[..., 1], wh2[..., 1])
  return inter / (wh1[..., 0] * wh1[..., 1] + wh2[..., 0] * wh2[..., 1] - inter + 1e-9)


@dataclasses.dataclass(frozen=True)
class _Levels:
  """Static facts of the yolo layers at one input size (from the cfg, not from traced preds)."""
  image_size: int
  offsets: tuple[int, ...]  # first anchor index of each yolo layer in A
  sizes: tuple[int, ...]  # grid side of each layer
  strides: tuple[float, ...]
  anchors: np.ndarray  # [K, 2] the masked anchors of all layers, in layer order
  anchor_level: np.ndarray  # [K] layer of each
  anchor_slot: np.ndarray  # [K] index within its layer's mask
  iou_thresh: np.ndarray  # [K] darknet iou_thresh of its layer (1.0: best anchor only)
  ignore_thresh: np.ndarray  # [A]


def _levels(cfg, *, num_classes, num_anchors) -> _Levels:
  """`_Levels` of the input size that gives `num_anchors` anchors (A grows as S^2)."""
  ref = plan_of(cfg, num_classes=num_classes)
  density = sum(len(ref.layers[i].anchors) / ref.layers[i].stride ** 2 for i in ref.yolo_indices)
  size = int(round(math.sqrt(num_anchors / density)))
  p = plan_of(cfg, num_classes=num_classes, image_size=size)
  offsets, sizes, strides, anchors, alevel, slot, iou, ignore = [], [], [], [], [], [], [], []
  start = 0
  for l, i in enumerate(p.yolo_indices):
    layer, n = p.layers[i], p.shapes[i][0]
    na = len(layer.anchors)
    offsets.append(start)
    sizes.append(n)
    strides.append(size / n)
    anchors.append(np.asarray(layer.anchors, np.float32))
    alevel += [l] * na
    slot += list(range(na))
    iou += [layer.iou_thresh] * na
    ignore.append(np.full(n * n * na, layer.ignore_thresh, np.float32))
    start += n * n * na
  if start != num_anchors:
    raise ValueError(f"{num_anchors} predicted anchors do not match the cfg at any input size")
  return _Levels(size, tuple(offsets), tuple(sizes), tuple(strides), np.concatenate(anchors),
                 np.asarray(alevel), np.asarray(slot), np.asarray(iou, np.float32),
                 np.concatenate(ignore))


def _assign(lv, boxes, classes, mask, *, num_anchors, multi_anchor):
  """Dense targets of one image.

  Args:
    boxes: `[M, 4]` xyxy input pixels; classes `[M]` int32; mask `[M]` bool.
    lv: `_Levels`; num_anchors: A.
    multi_anchor: v4: also anchors with wh-IoU > their layer's iou_thresh are positive.

  Returns:
    dict of `pos` `[A]` bool, `box` `[A, 4]` xyxy, `cls` `[A]` int32 (of the positive anchors).
  """
  a = num_anchors
  anchors = jnp.asarray(lv.anchors)  # [K, 2]
  wh = boxes[:, 2:4] - boxes[:, 0:2]
  centre = 0.5 * (boxes[:, 0:2] + boxes[:, 2:4])
  ious = _wh_iou(wh[:, None, :], anchors[None, :, :])  # [M, K]
  best = jnp.argmax(ious, axis=1)
  k = np.arange(len(lv.anchors))
  positive = (k[None, :] == best[:, None])
  if multi_anchor:
    positive = positive | (ious > lv.iou_thresh[None, :])
  positive = positive & mask[:, None] & (wh[:, 0:1] > 0) & (wh[:, 1:2] > 0)
  stride = jnp.asarray(np.asarray(lv.strides, np.float32)[lv.anchor_level])  # [K]
  side = np.asarray(lv.sizes)[lv.anchor_level]  # [K]
  col = jnp.clip(jnp.floor(centre[:, 0:1] / stride), 0, side - 1).astype(jnp.int32)
  row = jnp.clip(jnp.floor(centre[:, 1:2] / stride), 0, side - 1).astype(jnp.int32)
  na = np.bincount(lv.anchor_level)[lv.anchor_level]
  offset = np.asarray(lv.offsets)[lv.anchor_level]
  index = offset + (row * side + col) * na + lv.anchor_slot  # [M, K]
  index = jnp.where(positive, index, a)  # out of range: dropped
  flat = index.reshape(-1)
  pos = jnp.zeros(a, bool).at[flat].set(True, mode="drop")
  m = boxes.shape[0]
  gt = jnp.broadcast_to(jnp.arange(m)[:, None], index.shape).reshape(-1)
  owner = jnp.zeros(a, jnp.int32).at[flat].set(gt, mode="drop")
  return {"pos": pos, "box": boxes[owner], "cls": classes[owner]}


def loss_fn(preds, batch, *, config):
  """YOLOv3 (`config.loss="v3"`) or YOLOv4 (`"v4"`) training loss; see the module docstring.

  Args:
    preds: `Darknet.__call__` output (train mode).
    batch: `boxes` float32 `[B,M,4]` xyxy input pixels, `classes` int32 `[B,M]`, `box_mask` bool
      `[B,M]`.
    config: the model ConfigDict (or a full experiment config).

  Returns:
    `(loss [], metrics)`: `loss`, `box_loss`, `obj_loss`, `cls_loss`, `num_pos`.
  """
  cfg = model_config(config)
  kind = cfg.get("loss", "v3")
  if kind not in ("v3", "v4"):
    raise ValueError(f"unknown darknet loss {kind!r}; expected 'v3' or 'v4'")
  raw = preds["raw"].astype(jnp.float32)
  b, a, n = raw.shape
  num_classes = n - 5
  stride = preds["stride"]
  lv = _levels(cfg, num_classes=num_classes, num_anchors=a)
  image_size = lv.image_size
  gt_boxes = batch["boxes"].astype(jnp.float32)
  targets = jax.vmap(lambda bx, c, m: _assign(lv, bx, c, m, num_anchors=a,
                                              multi_anchor=kind == "v4"))(
      gt_boxes, batch["classes"], batch["box_mask"])
  pos = targets["pos"]
  num_pos = jnp.sum(pos).astype(jnp.float32)
  norm = losses.safe_normalizer(num_pos)
  pred_boxes = _decode_boxes(preds, raw)  # [B, A, 4]

  # Objectness: positives 1; negatives 0 unless their box overlaps some ground truth enough.
  ious = jax.vmap(box_ops.box_iou)(jax.lax.stop_gradient(pred_boxes), gt_boxes)  # [B, A, M]
  ious = jnp.where(batch["box_mask"][:, None, :], ious, 0.0)
  ignore = jnp.max(ious, axis=-1, initial=0.0) > lv.ignore_thresh[None, :]
  obj_bce = losses.sigmoid_binary_cross_entropy(raw[..., 4], pos.astype(jnp.float32))
  obj_loss = jnp.sum(jnp.where(pos | ~ignore, obj_bce, 0.0)) / norm

  eps = cfg.get("label_smoothing", 0.0)
  onehot = jax.nn.one_hot(targets["cls"], num_classes)
  cls_target = onehot * (1.0 - eps) + 0.5 * eps
  cls_bce = losses.sigmoid_binary_cross_entropy(raw[..., 5:], cls_target)
  cls_loss = losses.masked_sum(jnp.sum(cls_bce, -1), pos) / norm

  tgt = targets["box"]
  if kind == "v3":
    twh = jnp.maximum(tgt[..., 2:4] - tgt[..., 0:2], 1e-3)
    tcentre = 0.5 * (tgt[..., 0:2] + tgt[..., 2:4])
    txy = tcentre / stride - preds["grid_xy"]
    scale = preds["scale_xy"][:, None]
    txy = jnp.clip((txy + 0.5 * (scale - 1.0)) / scale, 0.0, 1.0)
    ttwh = jnp.log(twh / preds["anchor_wh"])
    weight = 2.0 - twh[..., 0] * twh[..., 1] / float(image_size) ** 2
    xy = jnp.sum(losses.sigmoid_binary_cross_entropy(raw[..., 0:2], txy), -1)
    wh = jnp.sum(jnp.square(jnp.where(pos[..., None], raw[..., 2:4] - ttwh, 0.0)), -1)
    box_loss = losses.masked_sum((xy + wh) * weight, pos) / norm
  else:
    safe = jnp.where(pos[..., None], tgt, jax.lax.stop_gradient(pred_boxes))
    box_loss = losses.masked_sum(losses.ciou_loss(pred_boxes, safe), pos) / norm

  loss = (cfg.get("box_weight", 1.0) * box_loss + cfg.get("obj_weight", 1.0) * obj_loss
          + cfg.get("cls_weight", 1.0) * cls_loss)
  return loss, {"loss": loss, "box_loss": box_loss, "obj_loss": obj_loss, "cls_loss": cls_loss,
                "num_pos": num_pos}


def count_params(variables) -> int:
  """Number of parameters (for reports)."""
  return int(sum(math.prod(np.shape(x)) for x in jax.tree.leaves(variables["params"])))
