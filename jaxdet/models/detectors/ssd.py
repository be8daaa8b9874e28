"""SSD (Liu et al. 2016), torchvision `ssd300_vgg16` semantics; SSD512 and SSD on any zoo backbone.

VGG (`backbone: "vgg16"`): torchvision's SSD feature extractor: pool3 in ceil mode, conv4_3
L2-normalized with a learned per-channel scale (init 20), pool5 3x3/1, fc6 as a 3x3 conv dilated
6, fc7 1x1, then the extra layers (1x1 reduction + 3x3 conv each). Any other zoo backbone gives
`c3, c4, c5` and the extra layers follow c5. One 3x3 conv per level predicts `C + 1` softmax
logits (column 0 = background, torchvision's label 0) and 4 box deltas per default box.
Default boxes from `jaxdet.ops.anchors.ssd_default_boxes_xyxy` (torchvision
`DefaultBoxGenerator`), `SSDMatcher` at IoU 0.5 (`jaxdet.ops.matching.ssd_matcher`), softmax CE
with 3:1 hard negative mining and smooth-L1 (beta 1) on BoxCoder (10, 10, 5, 5) deltas.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxdet import losses
from jaxdet.models.backbones import build_backbone
from jaxdet.models.backbones.vgg import CONFIGS as VGG_CONFIGS
from jaxdet.models.conv import Conv
from jaxdet.models.layers import conv_padding, max_pool
from jaxdet.models.postprocess import clip_boxes, softmax_scores
from jaxdet.models.registry import model_config
from jaxdet.ops import anchors as anchor_ops
from jaxdet.ops import boxes as box_ops
from jaxdet.ops import coders
from jaxdet.ops import matching

name = "ssd"  # registered name: this file's name and `config.model.name`

_XAVIER = nn.initializers.xavier_uniform()  # torchvision SSD: extras, fc6/fc7 and heads
# torchvision SSD's BoxCoder weights, one coder for the loss and `decode`.
_BOX_CODER = coders.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))

# Extra feature layers: (1x1 width, 3x3 width, kernel, stride, padding) after fc7 (or c5).
SSD300_EXTRAS = ((256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 1, 0),
                 (128, 256, 3, 1, 0))
# The paper's (Caffe) SSD512: two more stride-2 layers, then a 4x4 conv (padding 1) to 1x1.
SSD512_EXTRAS = ((256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 2, 1),
                 (128, 256, 3, 2, 1), (128, 256, 4, 1, 1))
SSD300_ASPECT_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
SSD512_ASPECT_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,))
# torchvision SSD's postprocess (`config.postprocess`): score 0.01, NMS 0.45, top 400 anchors per
# class, 200 detections.
POSTPROCESS = {"score_threshold": 0.01, "iou_threshold": 0.45, "max_detections": 200,
               "pre_nms_top_k": 400, "pre_nms_top_k_per_class": True}
# torchvision `ssd300_vgg16`'s pixel normalization: (x / 255 - mean) * 255.
SSD_PREPROCESS = {"value_range": 1.0, "mean": (0.48235, 0.45882, 0.40784),
                  "std": (1.0 / 255.0,) * 3, "resize": "stretch"}


def default_config() -> ml_collections.ConfigDict:
  """Default `config.model` block: SSD300 on VGG-16 (torchvision `ssd300_vgg16`)."""
  c = ml_collections.ConfigDict()
  c.name = name
  c.backbone = "vgg16"  # "vgg11/13/16/19": SSD's VGG; any other zoo backbone: c3, c4, c5 + extras
  c.frozen_bn = False  # zoo backbones with BatchNorm
  c.vgg_width_divisor = 1  # narrower VGG (tests, small data)
  c.fc_width = 1024  # fc6 / fc7
  c.l2norm_scale = 20.0  # initial scale of the conv4_3 L2 norm (VGG only)
  c.extra_layers = SSD300_EXTRAS
  c.aspect_ratios = SSD300_ASPECT_RATIOS
  c.scales = (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)  # () : linear 0.15..0.9, then 1.0
  c.steps = (8, 16, 32, 64, 100, 300)  # pixels at the input size; (): centres by map size
  c.iou_threshold = 0.5
  c.neg_to_pos_ratio = 3.0  # torchvision positive_fraction 0.25
  c.smooth_l1_beta = 1.0  # torch's smooth_l1_loss default
  c.preprocess = ml_collections.ConfigDict(SSD_PREPROCESS)
  return c


def ssd512_config() -> ml_collections.ConfigDict:
  """`config.model` of SSD512 on VGG-16 (the paper's 7 levels, scales 0.07..1.05, steps 8..512);
  train and infer it at `config.image_size = 512`."""
  c = default_config()
  c.update(extra_layers=SSD512_EXTRAS, aspect_ratios=SSD512_ASPECT_RATIOS,
           scales=(0.07, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.05),
           steps=(8, 16, 32, 64, 128, 256, 512))
  return c


def backbone_config(backbone: str, **options) -> ml_collections.ConfigDict:
  """`config.model` of SSD on a zoo backbone: levels c3, c4, c5 and the first three SSD300 extra
  layers (6 levels), default boxes centred by feature-map size. `options` go to the config
  (e.g. `width`, `depth` of `csp_darknet`, `frozen_bn`)."""
  c = default_config()
  c.update(backbone=backbone, extra_layers=SSD300_EXTRAS[:3], steps=())
  for key, value in options.items():
    c[key] = value
  return c


def test_config() -> ml_collections.ConfigDict:
  """A tiny `config.model` for the contract and export tests (fast on CPU at 64 px): VGG-11 at
  1/16 width, two extra layers (levels 8, 4, 2, 1 pixels at 64 px)."""
  c = default_config()
  c.update(backbone="vgg11", vgg_width_divisor=16, fc_width=32,
           extra_layers=((8, 16, 3, 2, 1), (8, 16, 3, 2, 1)),
           aspect_ratios=((2,), (2, 3), (2, 3), (2,)), scales=(), steps=())
  return c


def _is_ssd_vgg(backbone: str) -> bool:
  return backbone in tuple(f"vgg{d}" for d in VGG_CONFIGS)


class SSDVGG(nn.Module):
  """torchvision's `SSDFeatureExtractorVGG` body: conv4_3 (stride 8, pool3 in ceil mode) and fc7
  (stride 16). Conv names are those of jaxdet's VGG (`conv{block}_{i}`), so ImageNet VGG weights
  transfer with `init_from` (`^backbone/`).

  Returns from `__call__(images float32 [B,H,W,3])`: `(conv4_3 [B,h,w,512/d], fc7 [B,h/2,w/2,
  fc_width])`.
  """
  depth: int = 16
  width_divisor: int = 1
  fc_width: int = 1024

  @nn.compact
  def __call__(self, x):
    conv4_3 = None
    for b, widths in enumerate(VGG_CONFIGS[self.depth]):
      if b > 0:  # torchvision patches pool3 (before block 4) to ceil mode: 75 -> 38 at 300 px
        x = max_pool(x, window=2, stride=2, padding=0, ceil_mode=b == 3)
      for i, w in enumerate(widths):
        x = nn.relu(Conv(max(w // self.width_divisor, 1), (3, 3), padding=conv_padding(3),
                         name=f"conv{b + 1}_{i + 1}")(x))
      if b == 3:
        conv4_3 = x
    x = max_pool(x, window=3, stride=1, padding=1)  # pool5, 3x3 stride 1
    x = nn.relu(Conv(self.fc_width, (3, 3), padding=((6, 6), (6, 6)), kernel_dilation=(6, 6),
                     kernel_init=_XAVIER, name="fc6")(x))
    x = nn.relu(Conv(self.fc_width, (1, 1), kernel_init=_XAVIER, name="fc7")(x))
    return conv4_3, x


class L2Norm(nn.Module):
  """x / max(||x||_2 over channels, 1e-12) * scale (per channel, learned; torch `F.normalize`)."""
  init_scale: float = 20.0

  @nn.compact
  def __call__(self, x):
    scale = self.param("scale", nn.initializers.constant(self.init_scale), (x.shape[-1],))
    norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True))
    return x / jnp.maximum(norm, 1e-12) * scale


class SSD(nn.Module):
  """SSD detector.

  Attributes:
    num_classes: C foreground classes (the logits have C + 1 columns, background first).
    backbone: None for SSD's VGG (`vgg_depth`, `vgg_width_divisor`, `fc_width`), else a zoo
      backbone module (`{"c3","c4","c5"}` used).
    extra_layers: (1x1 width, conv width, kernel, stride, padding) per extra level.
    aspect_ratios: per level, the extra ratios of the default boxes.
    scales: num_levels + 1 scales (relative to the input), or () for torchvision's estimate.
    steps: per level step in pixels, or () for centres by feature-map size.
    l2norm_scale: initial scale of the L2 norm on the first (VGG) level.

  `__call__(images float32 [B,S,S,3], *, train, targets=None)` returns `cls_logits` float32
  `[B,A,C+1]`, `box_deltas` float32 `[B,A,4]` (BoxCoder (10, 10, 5, 5)), `anchors` float32
  `[A,4]` xyxy input pixels; A in torchvision's order (level, row, column, default box).
  """
  num_classes: int
  backbone: nn.Module | None = None
  vgg_depth: int = 16
  vgg_width_divisor: int = 1
  fc_width: int = 1024
  extra_layers: tuple = SSD300_EXTRAS
  aspect_ratios: tuple = SSD300_ASPECT_RATIOS
  scales: tuple = ()
  steps: tuple = ()
  l2norm_scale: float = 20.0

  @nn.compact
  def __call__(self, images, *, train, targets=None):
    del targets  # matching runs in the loss
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"images must be [B, H, W, 3], got {images.shape}")
    if self.backbone is None:
      conv4_3, x = SSDVGG(self.vgg_depth, self.vgg_width_divisor, self.fc_width,
                          name="backbone")(images)
      feats = [L2Norm(self.l2norm_scale, name="l2norm")(conv4_3), x]
    else:
      out = self.backbone(images, train=train)
      feats = [out["c3"], out["c4"], out["c5"]]
      x = feats[-1]
    for j, (mid, width, k, stride, pad) in enumerate(self.extra_layers):
      x = nn.relu(Conv(mid, (1, 1), kernel_init=_XAVIER, name=f"extra{j}_reduce")(x))
      if min(x.shape[1:3]) + 2 * pad < k:
        raise ValueError(f"input {images.shape[1]}x{images.shape[2]} is too small for SSD's "
                         f"extra layer {j} (a {x.shape[1]}x{x.shape[2]} map, kernel {k}); use a "
                         f"larger image_size or fewer extra_layers")
      x = nn.relu(Conv(width, (k, k), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                       kernel_init=_XAVIER, name=f"extra{j}_conv")(x))
      feats.append(x)
    if len(feats) != len(self.aspect_ratios):
      raise ValueError(f"SSD has {len(feats)} feature levels but aspect_ratios has "
                       f"{len(self.aspect_ratios)} entries; give one per level")
    cls, box = [], []
    for level, (feat, ratios) in enumerate(zip(feats, self.aspect_ratios)):
      per_cell = 2 + 2 * len(ratios)
      c = Conv(per_cell * (self.num_classes + 1), (3, 3), padding=conv_padding(3),
               kernel_init=_XAVIER, name=f"cls_head{level}")(feat)
      b = Conv(per_cell * 4, (3, 3), padding=conv_padding(3), kernel_init=_XAVIER,
               name=f"box_head{level}")(feat)
      # NHWC channel a * K + k is torchvision's (A, K) channel layout: rows, columns, boxes.
      cls.append(c.reshape(c.shape[0], -1, self.num_classes + 1))
      box.append(b.reshape(b.shape[0], -1, 4))
    anchors = anchor_ops.ssd_default_boxes_xyxy(
        images.shape[1:3], [f.shape[1:3] for f in feats], aspect_ratios=self.aspect_ratios,
        scales=self.scales or None, steps=self.steps or None)
    return {"cls_logits": jnp.concatenate(cls, axis=1),
            "box_deltas": jnp.concatenate(box, axis=1), "anchors": jnp.asarray(anchors)}


def _get(config):
  d = default_config()
  return lambda k: config.get(k, d[k])


def build(config, *, num_classes) -> SSD:
  """SSD module from a `default_config()`-shaped ConfigDict."""
  get = _get(config)
  backbone = get("backbone")
  vgg = _is_ssd_vgg(backbone)
  return SSD(num_classes=num_classes, backbone=None if vgg else build_backbone(config),
             vgg_depth=int(backbone[3:]) if vgg else 16,
             vgg_width_divisor=get("vgg_width_divisor"), fc_width=get("fc_width"),
             extra_layers=tuple(tuple(int(v) for v in e) for e in get("extra_layers")),
             aspect_ratios=tuple(tuple(r) for r in get("aspect_ratios")),
             scales=tuple(get("scales")), steps=tuple(get("steps")),
             l2norm_scale=get("l2norm_scale"))


def decode(preds, *, image_size, config=None):
  """Boxes and foreground probabilities (softmax, background dropped) from the raw predictions.

  Args:
    preds: output dict of `SSD.__call__`.
    image_size: int S (square input) or (H, W); boxes are clipped to it.
    config: the model config (unused).

  Returns:
    boxes_xyxy float32 `[B,A,4]` input pixels, scores float32 `[B,A,C]` in [0, 1].
  """
  del config
  boxes = _BOX_CODER.decode(preds["anchors"], preds["box_deltas"].astype(jnp.float32))
  return clip_boxes(boxes, image_size=image_size), softmax_scores(preds["cls_logits"])


def hard_negative_mask(ce, positive, *, neg_to_pos_ratio):
  """torchvision SSD's hard negative mining: per image the `ratio * num_positives` anchors of
  highest classification loss among the negatives (ranked with positives last).

  With no positives no negative is kept (torchvision's cap), so the loss stays finite and zero.

  Args:
    ce: float32 `[B, A]` per-anchor cross-entropy against the matched label (0 = background).
    positive: bool `[B, A]`.
    neg_to_pos_ratio: negatives per positive (3.0).

  Returns:
    bool `[B, A]`: the negatives that enter the classification loss.
  """
  ranked = jnp.where(positive, -jnp.inf, jax.lax.stop_gradient(ce))
  order = jnp.argsort(-ranked, axis=-1, stable=True)
  rank = jnp.argsort(order, axis=-1)  # position of each anchor in the descending order
  num_neg = neg_to_pos_ratio * jnp.sum(positive, axis=-1, keepdims=True)
  return rank < num_neg


def loss_fn(preds, batch, *, config):
  """SSD training loss (torchvision `SSD.compute_loss`).

  Each ground truth's best default box and every box with IoU >= `iou_threshold` are positive;
  classification is softmax cross-entropy over positives and the hard negatives
  (`hard_negative_mask`), box regression smooth-L1 over positives; both divided by
  max(total positives in the batch, 1).

  Args:
    preds: output dict of `SSD.__call__` (train mode).
    batch: dict with `boxes` float32 `[B,M,4]` xyxy input pixels, `classes` int32 `[B,M]`,
      `box_mask` bool `[B,M]`.
    config: the model ConfigDict (`config.model`; a full experiment config also works).

  Returns:
    `(loss [] float32, metrics)` with metrics `loss`, `cls_loss`, `box_loss`, `num_fg`.
  """
  cfg = model_config(config)
  get = _get(cfg)
  logits = preds["cls_logits"].astype(jnp.float32)
  deltas = preds["box_deltas"].astype(jnp.float32)
  anchors = preds["anchors"]
  gt_boxes = batch["boxes"].astype(jnp.float32)
  iou = box_ops.box_iou(gt_boxes, anchors)  # [B, M, A]
  matches = matching.ssd_matcher(iou, batch["box_mask"], threshold=get("iou_threshold"))
  fg = matches >= 0
  num_fg = jnp.sum(fg)
  labels = jnp.where(fg, matching.gather_matched(batch["classes"], matches) + 1, 0)
  ce = losses.softmax_cross_entropy(logits, labels)
  negatives = hard_negative_mask(ce, fg, neg_to_pos_ratio=get("neg_to_pos_ratio"))
  # torchvision sums the positives and the selected negatives separately (an anchor in both
  # counts twice; only possible when positives exceed a quarter of the anchors).
  cls_loss = (losses.normalized_sum(ce, fg, num_positives=num_fg)
              + losses.normalized_sum(ce, negatives, num_positives=num_fg))
  target_boxes = jnp.where(fg[..., None], matching.gather_matched(gt_boxes, matches), anchors)
  target_deltas = _BOX_CODER.encode(anchors, target_boxes)
  box = jnp.sum(losses.smooth_l1_loss(deltas, target_deltas, beta=get("smooth_l1_beta")), axis=-1)
  box_loss = losses.normalized_sum(box, fg, num_positives=num_fg)
  loss = cls_loss + box_loss
  return loss, {"loss": loss, "cls_loss": cls_loss, "box_loss": box_loss,
                "num_fg": num_fg.astype(jnp.float32)}
