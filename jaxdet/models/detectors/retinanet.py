"""RetinaNet (Lin et al. 2017), torchvision `retinanet_resnet50_fpn` semantics.

ResNet (or another backbone) + FPN P3-P7 + shared class/box subnets over 9 anchors per location;
anchors from `jaxdet.ops.anchors`, the IoU matcher (0.5 / 0.4, low-quality matches kept) from
`jaxdet.ops.matching`, sigmoid focal loss and L1 / smooth-L1 / GIoU box regression.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxdet import losses
from jaxdet.models.backbones import build_backbone
from jaxdet.models.conv import Conv
from jaxdet.models.postprocess import clip_and_score, valid_extent
from jaxdet.models.registry import model_config
from jaxdet.models.fpn import FPN
from jaxdet.models.layers import conv_padding
from jaxdet.ops import anchors as anchor_ops
from jaxdet.ops import coders
from jaxdet.ops import matching

_HEAD_INIT = nn.initializers.normal(stddev=0.01)  # torchvision RetinaNet head init

name = "retinanet"  # registered name: this file's name and `config.model.name`


def default_config() -> ml_collections.ConfigDict:
  """Default `config.model` block of RetinaNet (torchvision settings, ResNet-50 backbone)."""
  c = ml_collections.ConfigDict()
  c.name = name
  c.backbone = "resnet50"
  c.frozen_bn = False  # True freezes backbone BatchNorm (stats and affine) as torchvision does
  c.backbone_width = 64
  c.fpn_features = 256
  c.p6_from = "p5"  # torchvision v1: P6 from P5; "c5" for the paper / v2
  c.head_convs = 4
  c.head_norm = "none"  # "none" (v1) | "group" (v2: GroupNorm(32))
  c.strides = anchor_ops.RETINANET_STRIDES
  c.anchor_sizes = anchor_ops.RETINANET_SIZES
  c.aspect_ratios = anchor_ops.RETINANET_ASPECT_RATIOS
  c.prior_prob = 0.01
  c.fg_iou_threshold = 0.5
  c.bg_iou_threshold = 0.4
  c.allow_low_quality_matches = True
  c.focal_alpha = 0.25
  c.focal_gamma = 2.0
  c.box_loss = "l1"  # "l1" | "smooth_l1" | "giou"
  c.smooth_l1_beta = 1.0 / 9.0
  c.cls_weight = 1.0
  c.box_weight = 1.0
  return c


def test_config() -> ml_collections.ConfigDict:
  """A tiny `config.model` for the contract and export tests (fast on CPU at 64 px)."""
  c = default_config()
  c.update(backbone="resnet18", backbone_width=8, fpn_features=16, head_convs=1)
  return c


class RetinaNetHead(nn.Module):
  """Subnet of `num_convs` 3x3 conv+ReLU then a 3x3 prediction conv, shared across levels.

  Returns from `__call__(feat float32 [B,h,w,F])`: float32 `[B, h, w, A * out_per_anchor]`
  (`flatten_map` gives torchvision's `[B, h*w*A, out_per_anchor]` order: locations row-major,
  then anchors).
  """
  num_anchors: int
  out_per_anchor: int
  width: int = 256
  num_convs: int = 4
  norm: str = "none"
  bias_init: float = 0.0

  @nn.compact
  def __call__(self, x):
    for i in range(self.num_convs):
      x = Conv(self.width, (3, 3), padding=conv_padding(3), kernel_init=_HEAD_INIT,
                  use_bias=self.norm == "none", name=f"conv{i}")(x)
      if self.norm == "group":
        x = nn.GroupNorm(num_groups=32, epsilon=1e-5, name=f"gn{i}")(x)  # torch GroupNorm eps
      x = nn.relu(x)
    return Conv(self.num_anchors * self.out_per_anchor, (3, 3), padding=conv_padding(3),
                kernel_init=_HEAD_INIT, bias_init=nn.initializers.constant(self.bias_init),
                name="out")(x)


def flatten_map(x, out_per_anchor):
  """`[B, h, w, A * k]` head map -> `[B, h*w*A, k]` (locations row-major, then anchors)."""
  return x.reshape(x.shape[0], -1, out_per_anchor)


class RetinaNet(nn.Module):
  """RetinaNet detector.

  Attributes:
    num_classes: C (sigmoid classes, no background column).
    backbone: module mapping images to `{"c3","c4","c5"}` features.
    fpn_features: FPN and head channels.
    p6_from: source of P6 ("p5" or "c5").
    strides: level strides (5 levels P3-P7, or 3 levels P3-P5).
    anchor_sizes: per level anchor sizes (pixels).
    aspect_ratios: h/w ratios shared by all levels.
    head_convs: conv layers per subnet.
    head_norm: "none" or "group".
    prior_prob: initial foreground probability.

  `__call__(images float32 [B,H,W,3], *, train, targets=None)` returns a dict: `cls_logits`
  float32 `[B,A,C]`, `box_deltas` float32 `[B,A,4]` (BoxCoder dx, dy, dw, dh), `anchors` float32
  `[A,4]` xyxy input pixels (a constant of the input size), and `image_hw` when `targets` holds
  one (`[B,2]`: each image's extent in the padded input, torchvision's `image_sizes`; `decode`
  clips to it). Matching runs in the loss, so training ignores `targets`.
  """
  num_classes: int
  backbone: nn.Module
  fpn_features: int = 256
  p6_from: str = "p5"
  strides: tuple[int, ...] = anchor_ops.RETINANET_STRIDES
  anchor_sizes: tuple[tuple[float, ...], ...] = anchor_ops.RETINANET_SIZES
  aspect_ratios: tuple[float, ...] = anchor_ops.RETINANET_ASPECT_RATIOS
  head_convs: int = 4
  head_norm: str = "none"
  prior_prob: float = 0.01

  @nn.compact
  def head_maps(self, images, *, train):
    """Backbone + FPN + heads: per level (P3, P4, ...), `(cls [B,h,w,A*C], box [B,h,w,A*4])`.

    The part of the network that depends on no static size (the ONNX export of the "rcnn"
    preprocessing converts it with symbolic H, W; anchors come from the maps' shapes).
    """
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"images must be [B, H, W, 3], got {images.shape}")
    num_levels = len(self.strides)
    if num_levels not in (3, 5) or len(self.anchor_sizes) != num_levels:
      raise ValueError(f"need 3 or 5 strides and one anchor-size tuple per level, got "
                       f"{self.strides} and {len(self.anchor_sizes)} size tuples")
    feats = self.backbone(images, train=train)
    feats = FPN(self.fpn_features, num_levels == 5, self.p6_from, name="fpn")(feats, train=train)
    bias = -math.log((1 - self.prior_prob) / self.prior_prob)
    cls_head = RetinaNetHead(self.num_anchors, self.num_classes, self.fpn_features,
                             self.head_convs, self.head_norm, bias, name="cls_head")
    box_head = RetinaNetHead(self.num_anchors, 4, self.fpn_features, self.head_convs,
                             self.head_norm, name="box_head")
    return [(cls_head(feats[f"p{3 + i}"]), box_head(feats[f"p{3 + i}"]))
            for i in range(num_levels)]

  @property
  def num_anchors(self):
    """Anchors per location."""
    return len(self.anchor_sizes[0]) * len(self.aspect_ratios)

  def __call__(self, images, *, train, targets=None):
    maps = self.head_maps(images, train=train)
    anchors = anchor_ops.multilevel_anchors_xyxy(
        images.shape[1:3], [cls.shape[1:3] for cls, _ in maps], sizes=self.anchor_sizes,
        aspect_ratios=self.aspect_ratios)
    out = {"cls_logits": jnp.concatenate([flatten_map(c, self.num_classes) for c, _ in maps], 1),
           "box_deltas": jnp.concatenate([flatten_map(b, 4) for _, b in maps], 1),
           "anchors": jnp.asarray(anchors)}
    if targets is not None and "image_hw" in targets:
      out["image_hw"] = targets["image_hw"]
    return out


def build(config, *, num_classes) -> RetinaNet:
  """RetinaNet module from a `default_config()`-shaped ConfigDict."""
  d = default_config()
  get = lambda k: config.get(k, d[k])
  return RetinaNet(num_classes=num_classes, backbone=build_backbone(config),
                   fpn_features=get("fpn_features"), p6_from=get("p6_from"),
                   strides=tuple(get("strides")),
                   anchor_sizes=tuple(tuple(s) for s in get("anchor_sizes")),
                   aspect_ratios=tuple(get("aspect_ratios")), head_convs=get("head_convs"),
                   head_norm=get("head_norm"), prior_prob=get("prior_prob"))


def level_sizes(config, image_size) -> tuple[int, ...]:
  """Anchors per FPN level, in the order of A, for a square input S (or (H, W)).

  Every zoo backbone and the FPN's extra levels give ceil(S / stride) a side (`feature_sizes`),
  so this matches the shapes `RetinaNet.__call__` produces; the per-level pre-NMS top-k of the
  postprocess (torchvision's RetinaNet rule) slices A with it.
  """
  d = default_config()
  get = lambda k: config.get(k, d[k])
  per_cell = len(get("anchor_sizes")[0]) * len(get("aspect_ratios"))
  return tuple(h * w * per_cell
               for h, w in anchor_ops.feature_sizes(image_size, tuple(get("strides"))))


# torchvision's RetinaNet weights (1, 1, 1, 1). One coder for the loss and `decode`, so that what
# is trained is what is decoded (a configurable weight would have to reach `decode` too).
_BOX_CODER = coders.BoxCoder()


def decode(preds, *, image_size, config=None):
  """Boxes and class probabilities (sigmoid) from the raw predictions.

  Args:
    preds: output dict of `RetinaNet.__call__`.
    image_size: int S (square input) or (H, W); boxes are clipped to it (to `preds["image_hw"]`
      when present).
    config: the model config (unused: decoding needs nothing from it).

  Returns:
    boxes_xyxy float32 `[B,A,4]` input pixels, scores float32 `[B,A,C]` in [0, 1].
  """
  del config
  boxes = _BOX_CODER.decode(preds["anchors"], preds["box_deltas"].astype(jnp.float32))
  return clip_and_score(boxes, preds["cls_logits"], image_size=valid_extent(preds, image_size))


def loss_fn(preds, batch, *, config):
  """RetinaNet training loss (focal classification + box regression).

  Anchors with IoU >= fg threshold (or the best anchor of a gt) are positive, < bg threshold
  negative, in between ignored. The focal loss sums over positives and negatives, the box loss
  over positives; both are divided by max(total positives in the batch, 1).

  Args:
    preds: output dict of `RetinaNet.__call__` (train mode).
    batch: dict with `boxes` float32 `[B,M,4]` xyxy input pixels, `classes` int32 `[B,M]`,
      `box_mask` bool `[B,M]`.
    config: the model ConfigDict (`config.model`; a full experiment config also works).

  Returns:
    `(loss [] float32, metrics)` with metrics `loss`, `cls_loss`, `box_loss`, `num_fg`.
  """
  cfg = model_config(config)
  d = default_config()
  get = lambda k: cfg.get(k, d[k])
  logits = preds["cls_logits"].astype(jnp.float32)
  deltas = preds["box_deltas"].astype(jnp.float32)
  anchors = preds["anchors"]
  gt_boxes = batch["boxes"].astype(jnp.float32)
  num_classes = logits.shape[-1]

  matches = matching.match_boxes(gt_boxes, batch["box_mask"], anchors,
                                 high_threshold=get("fg_iou_threshold"),
                                 low_threshold=get("bg_iou_threshold"),
                                 allow_low_quality_matches=get("allow_low_quality_matches"))
  fg = matches >= 0  # [B, A]
  valid = matches != int(matching.MatchCode.IGNORE)
  num_fg = jnp.sum(fg)
  matched_classes = matching.gather_matched(batch["classes"], matches)
  cls_targets = jax.nn.one_hot(matched_classes, num_classes) * fg[..., None]
  focal = losses.sigmoid_focal_loss(logits, cls_targets, alpha=get("focal_alpha"),
                                    gamma=get("focal_gamma"))
  cls_loss = losses.normalized_sum(focal, valid[..., None], num_positives=num_fg)

  # Background anchors regress onto themselves: finite targets whose loss is masked out.
  target_boxes = jnp.where(fg[..., None], matching.gather_matched(gt_boxes, matches), anchors)
  kind = get("box_loss")
  coder = _BOX_CODER
  if kind == "giou":
    box = losses.giou_loss(coder.decode(anchors, deltas), target_boxes)
  elif kind in ("l1", "smooth_l1"):
    target_deltas = coder.encode(anchors, target_boxes)
    beta = get("smooth_l1_beta") if kind == "smooth_l1" else 0.0
    box = jnp.sum(losses.smooth_l1_loss(deltas, target_deltas, beta=beta), axis=-1)
  else:
    raise ValueError(f"unknown box_loss {kind!r}; expected 'l1', 'smooth_l1' or 'giou'")
  box_loss = losses.normalized_sum(box, fg, num_positives=num_fg)

  loss = get("cls_weight") * cls_loss + get("box_weight") * box_loss
  return loss, {"loss": loss, "cls_loss": cls_loss, "box_loss": box_loss,
                "num_fg": num_fg.astype(jnp.float32)}
