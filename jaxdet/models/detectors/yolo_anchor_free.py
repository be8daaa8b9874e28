"""`yolo_anchor_free`: CSP-Darknet + PAN + anchor-free decoupled head, task-aligned assigner.

A YOLOX/YOLOv8-like one-stage detector (registered as "yolo_anchor_free"; the old name "yolo" is a
loading alias only, the plain YOLO names belong to the classic YOLOv1/v3/v4).

Design (and why): an anchor-free head predicts, at every grid point of strides 8/16/32, class
logits and ltrb distances to the box sides (decoupled branches, as YOLOX/YOLOv8, because the two
tasks want different features). There is no objectness branch and no DFL: the task-aligned
assigner (`assigners.task_aligned_assign`) gives IoU-aware soft class targets, so the class score
already ranks boxes by localisation quality; plain distances keep the head small and fast on CPU.
Losses: BCE (or varifocal) on the soft targets and CIoU on decoded boxes, weighted by the target
quality and normalised by max(sum of soft targets, 1).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxdet import losses
from jaxdet.models import assigners
from jaxdet.models.backbones import build_backbone
from jaxdet.models.postprocess import clip_and_score
from jaxdet.models.registry import model_config
from jaxdet.models.conv import Conv
from jaxdet.models.backbones.csp_darknet import scaled_width
from jaxdet.models.layers import ConvBN
from jaxdet.models.pan import PAN
from jaxdet.ops import anchors as anchor_ops
from jaxdet.ops import coders

name = "yolo_anchor_free"  # registered name: this file's name and `config.model.name`


def default_config() -> ml_collections.ConfigDict:
  """Default `config.model` block of the anchor-free YOLO-style detector (nano, CPU friendly)."""
  c = ml_collections.ConfigDict()
  c.name = name
  c.backbone = "csp_darknet"
  c.width = 0.25  # channel multiplier (CSP-Darknet and PAN)
  c.depth = 0.33  # block multiplier
  c.max_channels = 1024
  c.frozen_bn = False
  c.strides = (8, 16, 32)
  c.head_width = 0  # 0: derived from the P3 width
  c.prior_prob = 0.01
  c.assigner = ml_collections.ConfigDict(dict(topk=10, alpha=0.5, beta=6.0))
  c.cls_loss = "bce"  # "bce" | "varifocal" | "focal"
  c.box_loss = "ciou"  # "ciou" | "giou" | "diou"
  c.cls_weight = 1.0
  c.box_weight = 5.0
  return c


def test_config() -> ml_collections.ConfigDict:
  """A tiny `config.model` for the contract and export tests (fast on CPU at 64 px)."""
  c = default_config()
  c.update(width=0.125, depth=0.33, head_width=16)
  return c


class DecoupledHead(nn.Module):
  """Per-level cls and box branches (two 3x3 ConvBN each, then a 1x1 prediction).

  Returns from `__call__(feat float32 [B,h,w,Cin], *, train)`: cls logits float32 `[B,h*w,C]`,
  raw box outputs float32 `[B,h*w,4]`.
  """
  num_classes: int
  cls_width: int
  box_width: int
  prior_prob: float = 0.01

  @nn.compact
  def __call__(self, x, *, train):
    bias = -math.log((1 - self.prior_prob) / self.prior_prob)
    c = ConvBN(self.cls_width, 3, name="cls1")(x, train=train)
    c = ConvBN(self.cls_width, 3, name="cls2")(c, train=train)
    c = Conv(self.num_classes, (1, 1), bias_init=nn.initializers.constant(bias), name="cls")(c)
    b = ConvBN(self.box_width, 3, name="box1")(x, train=train)
    b = ConvBN(self.box_width, 3, name="box2")(b, train=train)
    b = Conv(4, (1, 1), name="box")(b)
    flat = lambda t: t.reshape(t.shape[0], -1, t.shape[-1])
    return flat(c), flat(b)


class YOLOAnchorFree(nn.Module):
  """Anchor-free YOLO-style detector.

  Attributes:
    num_classes: C.
    backbone: module mapping images to `{"c3","c4","c5"}` features (named "backbone").
    neck_features: PAN output channels of P3..P5.
    neck_blocks: bottlenecks per PAN C2f.
    strides: strides of P3..P5 (must be (8, 16, 32) for this neck).
    head_width: channels of the head branches.
    prior_prob: initial foreground probability of the class logits.

  `__call__(images float32 [B,S,S,3], *, train, targets=None)` returns a dict (`targets`, the
  batch's boxes in train mode, is not needed: the assigner runs in the loss):
    `cls_logits` float32 `[B,A,C]`; `box_ltrb` float32 `[B,A,4]` distances (input pixels) from each
    point to the left/top/right/bottom box sides; `points` float32 `[A,2]` and `strides` float32
    `[A]` (constants of the input size), A = sum over levels of ceil(S/s)**2.
  """
  num_classes: int
  backbone: nn.Module
  neck_features: tuple[int, int, int] = (64, 128, 256)
  neck_blocks: int = 1
  strides: tuple[int, ...] = (8, 16, 32)
  head_width: int = 64
  prior_prob: float = 0.01

  @nn.compact
  def __call__(self, images, *, train, targets=None):
    del targets  # Part of the family contract (two-stage samplers need it); unused here.
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"images must be [B, H, W, 3], got {images.shape}")
    feats = self.backbone(images, train=train)
    feats = PAN(self.neck_features, self.neck_blocks, name="neck")(feats, train=train)
    cls_width = max(self.head_width, min(self.num_classes, 100))
    cls_out, box_out = [], []
    for i, level in enumerate(("p3", "p4", "p5")):
      c, b = DecoupledHead(self.num_classes, cls_width, self.head_width, self.prior_prob,
                           name=f"head_{level}")(feats[level], train=train)
      # softplus keeps distances positive with a smooth gradient; units of the level's stride.
      cls_out.append(c)
      box_out.append(jax.nn.softplus(b) * self.strides[i])
    points, strides = anchor_ops.grid_points(images.shape[1:3], self.strides)
    return {"cls_logits": jnp.concatenate(cls_out, axis=1),
            "box_ltrb": jnp.concatenate(box_out, axis=1),
            "points": jnp.asarray(points), "strides": jnp.asarray(strides)}


def build(config, *, num_classes) -> YOLOAnchorFree:
  """`YOLOAnchorFree` module from a `default_config()`-shaped ConfigDict."""
  if tuple(config.strides) != (8, 16, 32):
    raise ValueError(f"{name} strides must be (8, 16, 32), got {tuple(config.strides)}")
  width, max_ch = config.get("width", 0.25), config.get("max_channels", 1024)
  if config.backbone == "csp_darknet":
    neck = tuple(scaled_width(b, width=width, max_channels=max_ch) for b in (256, 512, 1024))
  else:
    neck = tuple(scaled_width(b, width=width) for b in (256, 512, 1024))
  head_width = config.get("head_width", 0) or max(16, neck[0])
  depth = config.get("depth", 0.33)
  return YOLOAnchorFree(num_classes=num_classes, backbone=build_backbone(config), neck_features=neck,
              neck_blocks=max(1, round(3 * depth)), strides=tuple(config.strides),
              head_width=head_width, prior_prob=config.get("prior_prob", 0.01))


def decode(preds, *, image_size, config=None):
  """Boxes and class probabilities (sigmoid) from the raw predictions.

  Args:
    preds: output dict of `YOLOAnchorFree.__call__`.
    image_size: int S (square input) or (H, W); boxes are clipped to it.
    config: the model config (unused: decoding needs nothing from it).

  Returns:
    boxes_xyxy float32 `[B,A,4]` input pixels, scores float32 `[B,A,C]` in [0, 1].
  """
  del config
  boxes = coders.decode_ltrb(preds["points"], preds["box_ltrb"].astype(jnp.float32))
  return clip_and_score(boxes, preds["cls_logits"], image_size=image_size)


def loss_fn(preds, batch, *, config):
  """Training loss of the anchor-free YOLO-style detector.

  Args:
    preds: output dict of `YOLOAnchorFree.__call__` (train mode).
    batch: dict with `boxes` float32 `[B,M,4]` xyxy input pixels, `classes` int32 `[B,M]`,
      `box_mask` bool `[B,M]`.
    config: the model ConfigDict (`config.model`; a full experiment config also works).

  Returns:
    `(loss [] float32, metrics)` with metrics `loss`, `cls_loss`, `box_loss`, `num_fg` (scalars).
  """
  cfg = model_config(config)
  kind, box_kind = cfg.get("cls_loss", "bce"), cfg.get("box_loss", "ciou")
  if kind not in ("bce", "varifocal", "focal"):
    raise ValueError(f"unknown cls_loss {kind!r}; expected 'bce', 'varifocal' or 'focal'")
  if box_kind not in losses.regression.IOU_LOSSES:
    raise ValueError(f"unknown box_loss {box_kind!r}; expected one of "
                     f"{sorted(losses.regression.IOU_LOSSES)}")
  logits = preds["cls_logits"].astype(jnp.float32)
  ltrb = preds["box_ltrb"].astype(jnp.float32)
  pred_boxes = coders.decode_ltrb(preds["points"], ltrb)
  a = cfg.get("assigner", {})
  assign = jax.vmap(lambda s, b, g, c, m: assigners.task_aligned_assign(
      s, b, preds["points"], g, c, m, topk=a.get("topk", 10), alpha=a.get("alpha", 0.5),
      beta=a.get("beta", 6.0)))
  targets = assign(jax.nn.sigmoid(logits), pred_boxes, batch["boxes"].astype(jnp.float32),
                   batch["classes"], batch["box_mask"])
  target_sum = jnp.sum(targets.target_scores)

  if kind == "bce":
    cls = losses.sigmoid_binary_cross_entropy(logits, targets.target_scores)
  elif kind == "varifocal":
    cls = losses.varifocal_loss(logits, targets.target_scores)
  else:
    cls = losses.sigmoid_focal_loss(logits, targets.target_scores)
  cls_loss = jnp.sum(cls) / losses.safe_normalizer(target_sum)

  # Background rows get their own prediction as target: a finite dummy that the mask drops, so
  # empty ground truth gives exactly 0 with finite gradients.
  safe_targets = jnp.where(targets.fg_mask[..., None], targets.target_boxes_xyxy,
                           jax.lax.stop_gradient(pred_boxes))
  box = losses.regression.IOU_LOSSES[box_kind](pred_boxes, safe_targets)
  weight = jnp.where(targets.fg_mask, jnp.sum(targets.target_scores, -1), 0.0)
  box_loss = losses.masked_sum(box, weight) / losses.safe_normalizer(target_sum)

  loss = cfg.get("cls_weight", 1.0) * cls_loss + cfg.get("box_weight", 5.0) * box_loss
  metrics = {"loss": loss, "cls_loss": cls_loss, "box_loss": box_loss,
             "num_fg": jnp.sum(targets.fg_mask).astype(jnp.float32)}
  return loss, metrics
