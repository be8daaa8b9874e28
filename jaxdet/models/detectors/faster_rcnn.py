"""Faster R-CNN with FPN (Ren et al. 2015, Lin et al. 2017), torchvision `fasterrcnn_resnet50_fpn`
(v1) and `fasterrcnn_resnet50_fpn_v2` semantics; Fast R-CNN mode on supplied proposals.

Two-stage data flow, all at static shapes:
  backbone C2..C5 -> FPN P2..P5 (+ "pool" = P5 subsampled, RPN only)
  -> RPN: objectness and deltas per anchor; per level top `rpn_pre_nms_top_n`, decode, clip,
     small boxes dropped, NMS 0.7 per level, best `rpn_post_nms_top_n` -> proposals [B,P,4] and a
     validity mask [B,P] (padding slots are masked, never dropped)
  -> (train) ground truth appended, IoU matching 0.5, `roi_batch_size` RoIs sampled (25 %
     positive, "sampler" RNG stream) -> RoIs [B,R,4]
  -> multi-scale RoIAlign 7x7 (or RoIPool) -> TwoMLPHead (v1) or 4 conv + 1 FC (v2)
  -> class logits [B,R,C+1] (column 0 background) and class-specific deltas [B,R,C+1,4]
     (BoxCoder weights 10, 10, 5, 5).
`decode` gives softmax scores without the background column and class-specific boxes
`[B,P,C,4]`; `jaxdet.models.postprocess` (score 0.05, per-class NMS 0.5, 100 detections) ends it.

Fast R-CNN mode (`proposals="external"`): no RPN; the RoI head runs on `targets["proposals"]`
`[B,P,4]` (optional `targets["proposal_mask"]` `[B,P]`), in training and inference.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxdet import losses
from jaxdet.models.backbones import build_backbone
from jaxdet.models.registry import model_config
from jaxdet.models.conv import Conv
from jaxdet.models.fpn import FPN
from jaxdet.models.layers import ConvBN, conv_padding
from jaxdet.models.postprocess import clip_boxes, softmax_scores, valid_extent
from jaxdet.ops import anchors as anchor_ops
from jaxdet.ops import coders
from jaxdet.ops import matching
from jaxdet.ops.boxes import remove_small_boxes
from jaxdet.ops.multiscale_roi_align import multiscale_roi_align
from jaxdet.ops.nms import batched_nms
from jaxdet.ops.roi_pool import roi_pool

name = "faster_rcnn"  # registered name: this file's name and `config.model.name`

_RPN_CODER = coders.BoxCoder((1.0, 1.0, 1.0, 1.0))
_ROI_CODER = coders.BoxCoder((10.0, 10.0, 5.0, 5.0))
_RPN_MIN_SIZE = 1e-3  # torchvision RPN's min_size
_DET_MIN_SIZE = 1e-2  # torchvision RoIHeads' small-box removal before the final NMS
_FPN_LEVELS = ("p2", "p3", "p4", "p5")


def default_config() -> ml_collections.ConfigDict:
  """Default `config.model` of Faster R-CNN (torchvision v1 settings, ResNet-50 backbone)."""
  c = ml_collections.ConfigDict()
  c.name = name
  c.backbone = "resnet50"
  c.frozen_bn = False
  c.backbone_width = 64
  c.fpn_features = 256
  c.fpn_norm = "none"  # "none" (v1) | "batch" (v2)
  c.proposals = "rpn"  # "rpn" | "external" (Fast R-CNN: targets["proposals"])
  c.anchor_sizes = ((32.0,), (64.0,), (128.0,), (256.0,), (512.0,))
  c.aspect_ratios = (0.5, 1.0, 2.0)
  c.rpn_convs = 1  # 1 (v1) | 2 (v2)
  c.rpn_pre_nms_top_n_train = 2000
  c.rpn_pre_nms_top_n_test = 1000
  c.rpn_post_nms_top_n_train = 2000
  c.rpn_post_nms_top_n_test = 1000
  c.rpn_nms_threshold = 0.7
  c.rpn_fg_iou_threshold = 0.7
  c.rpn_bg_iou_threshold = 0.3
  c.rpn_batch_size = 256
  c.rpn_positive_fraction = 0.5
  c.roi_pooler = "align"  # "align" (multi-scale RoIAlign) | "pool" (RoIPool on `roi_pool_level`)
  c.roi_pool_level = "p4"
  c.roi_output_size = 7
  c.roi_sampling_ratio = 2
  c.box_head = "two_mlp"  # "two_mlp" (v1) | "conv_fc" (v2: 4 conv + BN, 1 FC)
  c.box_head_convs = 4
  c.representation_size = 1024
  c.roi_fg_iou_threshold = 0.5
  c.roi_bg_iou_threshold = 0.5
  c.roi_batch_size = 512
  c.roi_positive_fraction = 0.25
  c.smooth_l1_beta = 1.0 / 9.0
  return c


def test_config() -> ml_collections.ConfigDict:
  """A tiny `config.model` for the contract and export tests (fast on CPU at 64 px)."""
  c = default_config()
  c.update(backbone="resnet18", backbone_width=8, fpn_features=16, representation_size=32,
           anchor_sizes=((8.0,), (16.0,), (32.0,), (64.0,), (128.0,)),
           rpn_pre_nms_top_n_train=64, rpn_pre_nms_top_n_test=64, rpn_post_nms_top_n_train=32,
           rpn_post_nms_top_n_test=32, rpn_batch_size=64, roi_batch_size=32)
  return c


def _get(config):
  cfg = model_config(config)
  d = default_config()
  return lambda k: cfg.get(k, d[k])


class RPNHead(nn.Module):
  """torchvision `RPNHead`: `num_convs` 3x3 conv+ReLU, then 1x1 objectness and 1x1 deltas.

  `__call__(feat [B,h,w,F])` -> (objectness [B, h, w, A], deltas [B, h, w, A*4]) maps
  (`flatten_rpn` gives `[B, h*w*A]` and `[B, h*w*A, 4]`, order (y, x, a)).
  """
  num_anchors: int
  num_convs: int = 1

  @nn.compact
  def __call__(self, x):
    init = nn.initializers.normal(stddev=0.01)
    for i in range(self.num_convs):
      x = nn.relu(Conv(x.shape[-1], (3, 3), padding=conv_padding(3), kernel_init=init,
                       name=f"conv{i}")(x))
    logits = Conv(self.num_anchors, (1, 1), kernel_init=init, name="cls")(x)
    deltas = Conv(4 * self.num_anchors, (1, 1), kernel_init=init, name="box")(x)
    return logits, deltas


def flatten_rpn(logits, deltas):
  """RPN maps `[B,h,w,A]`, `[B,h,w,A*4]` -> `[B, h*w*A]`, `[B, h*w*A, 4]` (order (y, x, a))."""
  b = logits.shape[0]
  return logits.reshape(b, -1), deltas.reshape(b, -1, 4)


class BoxHead(nn.Module):
  """RoI feature head: TwoMLPHead (v1: fc6, fc7) or FastRCNNConvFCHead (v2: conv0..3 + fc6).

  `__call__(roi_feats [B,R,s,s,F], *, train)` -> [B, R, representation_size].
  """
  kind: str = "two_mlp"
  representation_size: int = 1024
  num_convs: int = 4

  @nn.compact
  def __call__(self, x, *, train):
    b, r = x.shape[:2]
    x = x.reshape((b * r,) + x.shape[2:])
    if self.kind == "conv_fc":
      for i in range(self.num_convs):
        x = ConvBN(x.shape[-1], 3, act=nn.relu, name=f"conv{i}")(x, train=train)
    elif self.kind != "two_mlp":
      raise ValueError(f"box_head must be 'two_mlp' or 'conv_fc', got {self.kind!r}")
    x = nn.relu(nn.Dense(self.representation_size, name="fc6")(x.reshape(b * r, -1)))
    if self.kind == "two_mlp":
      x = nn.relu(nn.Dense(self.representation_size, name="fc7")(x))
    return x.reshape(b, r, -1)


def _check_proposals(proposals, mask, batch):
  """(proposals float32 [B,P,4], mask bool [B,P]) with non-finite rows masked, or a clear error."""
  proposals = jnp.asarray(proposals)
  if proposals.ndim != 3 or proposals.shape[0] != batch or proposals.shape[-1] != 4:
    raise ValueError(f"targets['proposals'] must be [B, P, 4] with B = {batch}, got shape "
                     f"{proposals.shape}")
  if mask is None:
    mask = jnp.ones(proposals.shape[:2], bool)
  elif jnp.shape(mask) != proposals.shape[:2]:
    raise ValueError(f"targets['proposal_mask'] must be [B, P] = {proposals.shape[:2]} like "
                     f"targets['proposals'], got shape {jnp.shape(mask)}")
  finite = jnp.all(jnp.isfinite(proposals), -1)
  proposals = jnp.where(finite[..., None], proposals, 0.0).astype(jnp.float32)
  return jax.lax.stop_gradient(proposals), jnp.asarray(mask, bool) & finite


def rpn_candidates(objectness, deltas, anchors, *, level_sizes, image_size, pre_nms_top_n):
  """The RPN's NMS candidates: per level the best `pre_nms_top_n` anchors, decoded and clipped.

  Args:
    objectness: float32 [B, A] logits; deltas float32 [B, A, 4]; anchors float32 [A, 4] xyxy.
    level_sizes: anchors per level (static), in the order of A.
    image_size: (H, W) to clip to, or per image `[B, 2]`.
    pre_nms_top_n: best anchors kept per level.

  Returns:
    (boxes float32 [B, K, 4] xyxy, scores float32 [B, K] sigmoid objectness or -1 for boxes
    under 1e-3 px (never kept), level int32 [K] (static)), K = sum_l min(pre_nms_top_n, A_l).
  """
  objectness = jax.lax.stop_gradient(objectness.astype(jnp.float32))
  deltas = jax.lax.stop_gradient(deltas.astype(jnp.float32))
  picks, levels, start = [], [], 0
  for level, size in enumerate(level_sizes):
    k = min(pre_nms_top_n, size)
    _, index = jax.lax.top_k(objectness[:, start:start + size], k)
    picks.append(index + start)
    levels.append(jnp.full((k,), level, jnp.int32))
    start += size
  index = jnp.concatenate(picks, axis=1)  # [B, K]
  boxes, scores = score_rpn_candidates(
      jnp.take_along_axis(objectness, index, axis=1),
      jnp.take_along_axis(deltas, index[..., None], axis=1), jnp.take(anchors, index, axis=0),
      image_size=image_size)
  return boxes, scores, jnp.concatenate(levels)


def score_rpn_candidates(logits, deltas, anchors, *, image_size, valid=None):
  """The second half of `rpn_candidates` (also the ONNX export's, after its own top-n):
  selected anchors decoded, clipped, scored.

  Args:
    logits: float32 [B, K] objectness logits of the selected anchors.
    deltas: float32 [B, K, 4] their deltas.
    anchors: float32 [B, K, 4] (or [K, 4]) their anchors, xyxy.
    image_size: (H, W) to clip to, or per image `[B, 2]`.
    valid: optional bool [B, K]; False slots score -1 (padding of a short level).

  Returns:
    (boxes float32 [B, K, 4] xyxy, scores float32 [B, K]: sigmoid objectness, or -1 for boxes
    under 1e-3 px and invalid slots (never kept)).
  """
  boxes = clip_boxes(_RPN_CODER.decode(anchors, deltas), image_size=image_size)
  keep = remove_small_boxes(boxes, _RPN_MIN_SIZE) & jnp.all(jnp.isfinite(boxes), -1)
  if valid is not None:
    keep = keep & valid
  return boxes, jnp.where(keep, jax.nn.sigmoid(logits), -1.0)


def rpn_proposals(objectness, deltas, anchors, *, level_sizes, image_size, pre_nms_top_n,
                  post_nms_top_n, nms_threshold):
  """torchvision RPN `filter_proposals` at static shapes: `rpn_candidates`, then NMS per level
  and the best `post_nms_top_n` of all levels.

  Returns:
    (proposals float32 [B, P, 4] xyxy, mask bool [B, P], scores float32 [B, P] sigmoid
    objectness), in torchvision's order (descending objectness); padding rows are zeros and
    masked.
  """
  boxes, scores, level = rpn_candidates(objectness, deltas, anchors, level_sizes=level_sizes,
                                        image_size=image_size, pre_nms_top_n=pre_nms_top_n)
  scores = jnp.where(scores >= 0, scores, -jnp.inf)

  def one(b, s):
    return batched_nms(b, s, level, iou_threshold=nms_threshold,
                       max_output_size=post_nms_top_n)

  kept = jax.vmap(one)(boxes, scores)
  order = jnp.maximum(kept.indices, 0)
  proposals = jnp.take_along_axis(boxes, order[..., None], axis=1)
  proposals = jnp.where(kept.valid[..., None], proposals, 0.0)
  return proposals, kept.valid, jnp.where(kept.valid, jnp.take_along_axis(scores, order, 1), 0.0)


def _sample_rois(key, proposals, mask, targets, *, num_samples, positive_fraction, fg_iou, bg_iou):
  """Ground truth appended to the proposals, matched and sampled (torchvision RoIHeads training).

  Returns (rois [B,R,4], valid [B,R], labels int32 [B,R] (0 background, c+1 class c),
  target boxes [B,R,4]) with R = min(num_samples, P + M).
  """
  gt_boxes = targets["boxes"].astype(jnp.float32)
  gt_mask = targets["box_mask"]
  candidates = jnp.concatenate([proposals, jnp.where(gt_mask[..., None], gt_boxes, 0.0)], axis=1)
  cand_valid = jnp.concatenate([mask, gt_mask], axis=1)
  matches = matching.match_boxes(gt_boxes, gt_mask, candidates, high_threshold=fg_iou,
                                 low_threshold=bg_iou)
  matches = jnp.where(cand_valid, matches, int(matching.MatchCode.IGNORE))
  positive, negative = matching.sample_balanced(key, matches, num_samples=num_samples,
                                                positive_fraction=positive_fraction)
  sampled = positive | negative
  r = min(num_samples, candidates.shape[1])
  _, index = jax.lax.top_k(sampled.astype(jnp.int32), r)  # sampled first, ties by index
  take = lambda x: jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), 1)
  valid = take(sampled)
  roi_matches = take(matches)
  fg = take(positive)
  labels = jnp.where(fg, matching.gather_matched(targets["classes"], roi_matches) + 1, 0)
  target_boxes = matching.gather_matched(gt_boxes, roi_matches)
  return take(candidates), valid, labels.astype(jnp.int32), target_boxes


class FasterRCNN(nn.Module):
  """Faster R-CNN (or Fast R-CNN on external proposals).

  Attributes:
    num_classes: C foreground classes (the classifier has C + 1 outputs, column 0 background).
    backbone: module mapping images to `{"c2".."c5"}`.
    config: the resolved model ConfigDict (`default_config()` keys; frozen into the module).

  `__call__(images float32 [B,H,W,3], *, train, targets=None)` returns a dict:
    `proposals` [B,P,4], `proposal_mask` [B,P] float 0/1 (the RoIs: proposals at inference, the sampled
      RoIs in training), `class_logits` [B,P,C+1], `box_deltas` [B,P,C+1,4];
    with the RPN also `rpn_objectness` [B,A], `rpn_deltas` [B,A,4], `anchors` [A,4] and
      `proposal_scores` [B,P] (inference);
    in training also `roi_labels` [B,R] (class + 1, 0 background), `roi_target_boxes` [B,R,4]
      and, with the RPN, the RPN's sampled anchors `rpn_positive`, `rpn_negative` [B,A] and
      `rpn_target_boxes` [B,A,4].
  All values are float32 (masks 0/1, labels as whole numbers). Training needs `targets` (`boxes`, `classes`, `box_mask`) and the "sampler" RNG stream;
  Fast R-CNN mode reads `targets["proposals"]` (and `proposal_mask`) in both modes. An
  optional `targets["image_hw"]` `[B,2]` (each image's extent in the padded input,
  torchvision's `image_sizes`) is what proposals and detections are clipped to; it is passed on
  as `image_hw` for `decode`.
  """
  num_classes: int
  backbone: nn.Module
  config: ml_collections.FrozenConfigDict

  def setup(self):
    cfg = self.config
    if cfg.proposals not in ("rpn", "external"):
      raise ValueError(f"proposals must be 'rpn' or 'external', got {cfg.proposals!r}")
    if cfg.roi_pooler not in ("align", "pool"):
      raise ValueError(f"roi_pooler must be 'align' or 'pool', got {cfg.roi_pooler!r}")
    self.fpn = FPN(cfg.fpn_features, extra_levels=False, min_level=2, norm=cfg.fpn_norm)
    if cfg.proposals == "rpn":
      self.rpn_head = RPNHead(len(cfg.anchor_sizes[0]) * len(cfg.aspect_ratios), cfg.rpn_convs)
    self.box_head = BoxHead(cfg.box_head, cfg.representation_size, cfg.box_head_convs)
    c1 = self.num_classes + 1
    self.cls_score = nn.Dense(c1, kernel_init=nn.initializers.normal(0.01))
    self.bbox_pred = nn.Dense(4 * c1, kernel_init=nn.initializers.normal(0.001))

  def features(self, images, *, train):
    """FPN maps `{"p2".."p5"}` float32 [B, S/2^l, S/2^l, F] of images [B,S,S,3]."""
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"images must be [B, H, W, 3], got {images.shape}")
    return self.fpn(self.backbone(images, train=train), train=train)

  def rpn_maps(self, feats):
    """RPN head maps over P2..P5 + "pool": per level `(objectness [B,h,w,A], deltas
    [B,h,w,A*4])`."""
    # torchvision's LastLevelMaxPool: max_pool2d(kernel 1, stride 2) of P5, for the RPN only
    # (a strided `lax.slice`: ONNX `Slice` with steps, also for a symbolic size).
    p5 = feats["p5"]
    pool = jax.lax.slice(p5, (0, 0, 0, 0), p5.shape, (1, 2, 2, 1))
    return [self.rpn_head(f) for f in [feats[l] for l in _FPN_LEVELS] + [pool]]

  def rpn(self, feats, image_size):
    """RPN head over P2..P5 + "pool": (objectness [B,A], deltas [B,A,4], anchors [A,4],
    anchors per level)."""
    cfg = self.config
    maps = self.rpn_maps(feats)
    anchors = jnp.asarray(anchor_ops.multilevel_anchors_xyxy(
        image_size, [m.shape[1:3] for m, _ in maps],
        sizes=tuple(tuple(s) for s in cfg.anchor_sizes), aspect_ratios=tuple(cfg.aspect_ratios)))
    flat = [flatten_rpn(*m) for m in maps]
    level_sizes = tuple(o.shape[1] for o, _ in flat)
    return (jnp.concatenate([o for o, _ in flat], axis=1),
            jnp.concatenate([d for _, d in flat], axis=1), anchors, level_sizes)

  def pool(self, feats, rois, image_size):
    """RoI features [B,R,s,s,F] of rois [B,R,4] (multi-scale RoIAlign or RoIPool)."""
    cfg = self.config
    if cfg.roi_pooler == "align":
      return multiscale_roi_align(
          [feats[l] for l in _FPN_LEVELS], rois, image_size=image_size,
          output_size=cfg.roi_output_size, sampling_ratio=cfg.roi_sampling_ratio)
    level = feats[cfg.roi_pool_level]
    return roi_pool(level, rois, output_size=cfg.roi_output_size,
                    spatial_scale=level.shape[1] / image_size[0])

  def roi_head(self, roi_feats, *, train):
    """(class_logits [B,R,C+1], box_deltas [B,R,C+1,4]) of RoI features [B,R,s,s,F]."""
    x = self.box_head(roi_feats, train=train)
    deltas = self.bbox_pred(x)
    return self.cls_score(x), deltas.reshape(deltas.shape[:2] + (self.num_classes + 1, 4))

  def __call__(self, images, *, train, targets=None):
    cfg = self.config
    if train and targets is None:
      raise ValueError("faster_rcnn needs `targets` (boxes, classes, box_mask) in training")
    batch, image_size = images.shape[0], images.shape[1:3]
    # Each image's extent in a padded batch (torchvision's `image_sizes`): proposals and
    # detections are clipped to it. (The RoI levels' scales stay the strides': torchvision
    # infers them once, from the first batch it pools.)
    image_hw = None if targets is None else targets.get("image_hw")
    clip_to = image_size if image_hw is None else image_hw
    feats = self.features(images, train=train)
    out = {}
    if cfg.proposals == "rpn":
      objectness, rpn_deltas, anchors, level_sizes = self.rpn(feats, image_size)
      mode = "train" if train else "test"
      proposals, mask, scores = rpn_proposals(
          objectness, rpn_deltas, anchors, level_sizes=level_sizes, image_size=clip_to,
          pre_nms_top_n=cfg[f"rpn_pre_nms_top_n_{mode}"],
          post_nms_top_n=cfg[f"rpn_post_nms_top_n_{mode}"], nms_threshold=cfg.rpn_nms_threshold)
      out.update(rpn_objectness=objectness, rpn_deltas=rpn_deltas, anchors=anchors)
      if not train:
        out["proposal_scores"] = scores
    else:
      targets = targets or {}
      if "proposals" not in targets:
        raise ValueError("faster_rcnn with proposals='external' (Fast R-CNN) needs "
                         "targets['proposals'] [B, P, 4]")
      proposals, mask = _check_proposals(targets["proposals"], targets.get("proposal_mask"),
                                         batch)
    if train:
      rpn_key, roi_key = jax.random.split(self.make_rng("sampler"))
      gt_boxes = targets["boxes"].astype(jnp.float32)
      if cfg.proposals == "rpn":
        matches = matching.match_boxes(
            gt_boxes, targets["box_mask"], anchors, high_threshold=cfg.rpn_fg_iou_threshold,
            low_threshold=cfg.rpn_bg_iou_threshold, allow_low_quality_matches=True)
        pos, neg = matching.sample_balanced(rpn_key, matches, num_samples=cfg.rpn_batch_size,
                                            positive_fraction=cfg.rpn_positive_fraction)
        out.update(rpn_positive=_f32(pos), rpn_negative=_f32(neg),
                   rpn_target_boxes=matching.gather_matched(gt_boxes, matches))
      proposals, mask, labels, target_boxes = _sample_rois(
          roi_key, proposals, mask, targets, num_samples=cfg.roi_batch_size,
          positive_fraction=cfg.roi_positive_fraction, fg_iou=cfg.roi_fg_iou_threshold,
          bg_iou=cfg.roi_bg_iou_threshold)
      out.update(roi_labels=_f32(labels), roi_target_boxes=target_boxes)
    class_logits, box_deltas = self.roi_head(self.pool(feats, proposals, image_size), train=train)
    out.update(proposals=proposals, proposal_mask=_f32(mask), class_logits=class_logits,
               box_deltas=box_deltas)
    if image_hw is not None:
      out["image_hw"] = image_hw
    return out


def _f32(x):
  # Every prediction is float (the contract differentiates the loss w.r.t. the whole dict).
  return x.astype(jnp.float32)


def build(config, *, num_classes) -> FasterRCNN:
  """FasterRCNN module from a `default_config()`-shaped ConfigDict."""
  d = default_config()
  resolved = ml_collections.ConfigDict({k: config.get(k, d[k]) for k in d.keys()})
  return FasterRCNN(num_classes=num_classes, backbone=build_backbone(config),
                    config=ml_collections.FrozenConfigDict(resolved))


def decode(preds, *, image_size, config=None):
  """Class-specific boxes and softmax scores of the RoIs.

  Args:
    preds: output dict of `FasterRCNN.__call__` (inference).
    image_size: int S or (H, W); boxes are clipped to it (to `preds["image_hw"]` when present).
    config: unused.

  Returns:
    boxes_xyxy float32 `[B,P,C,4]` input pixels, scores float32 `[B,P,C]` (softmax over C + 1,
    background dropped); 0 for padding RoIs and for boxes under 0.01 px after clipping
    (torchvision's `remove_small_boxes` before its final NMS).
  """
  del config
  deltas = preds["box_deltas"][:, :, 1:].astype(jnp.float32)
  proposals = preds["proposals"].astype(jnp.float32)
  boxes = clip_boxes(_ROI_CODER.decode(proposals[:, :, None, :], deltas),
                     image_size=valid_extent(preds, image_size))
  scores = softmax_scores(preds["class_logits"])
  keep = remove_small_boxes(boxes, _DET_MIN_SIZE) & (preds["proposal_mask"][..., None] > 0)
  return boxes, jnp.where(keep, scores, 0.0)


def loss_fn(preds, batch, *, config):
  """RPN and RoI-head losses, normalized as torchvision.

  RPN: BCE over the sampled anchors (mean) + smooth-L1 (beta 1/9) of the positive anchors'
  deltas summed and divided by the number of sampled anchors. RoI head: softmax cross-entropy
  over the sampled RoIs (mean) + smooth-L1 of the positive RoIs' deltas of their class, summed
  and divided by the number of sampled RoIs. Counts are over the whole batch, floored at 1.

  Args:
    preds: output dict of `FasterRCNN.__call__` (train mode).
    batch: the batch (targets were consumed by the forward; unused here).
    config: the model ConfigDict (or a full experiment config).

  Returns:
    `(loss [] float32, metrics)`: `loss`, `rpn_cls_loss`, `rpn_box_loss`, `roi_cls_loss`,
    `roi_box_loss`, `num_fg` (positive RoIs).
  """
  del batch
  get = _get(config)
  beta = get("smooth_l1_beta")
  metrics = {}
  total = jnp.float32(0.0)
  if "rpn_objectness" in preds:
    pos, neg = preds["rpn_positive"] > 0, preds["rpn_negative"] > 0
    sampled = pos | neg
    count = jnp.maximum(jnp.sum(sampled), 1).astype(jnp.float32)
    bce = losses.sigmoid_binary_cross_entropy(preds["rpn_objectness"].astype(jnp.float32),
                                              pos.astype(jnp.float32))
    rpn_cls = jnp.sum(jnp.where(sampled, bce, 0.0)) / count
    anchors = jnp.broadcast_to(preds["anchors"], preds["rpn_target_boxes"].shape)
    target = _RPN_CODER.encode(anchors, jnp.where(pos[..., None], preds["rpn_target_boxes"],
                                                  anchors))
    box = jnp.sum(losses.smooth_l1_loss(preds["rpn_deltas"].astype(jnp.float32), target,
                                        beta=beta), -1)
    rpn_box = jnp.sum(jnp.where(pos, box, 0.0)) / count
    metrics.update(rpn_cls_loss=rpn_cls, rpn_box_loss=rpn_box)
    total = total + rpn_cls + rpn_box
  valid, labels = preds["proposal_mask"] > 0, preds["roi_labels"].astype(jnp.int32)
  count = jnp.maximum(jnp.sum(valid), 1).astype(jnp.float32)
  ce = losses.softmax_cross_entropy(preds["class_logits"].astype(jnp.float32), labels)
  roi_cls = jnp.sum(jnp.where(valid, ce, 0.0)) / count
  fg = valid & (labels > 0)
  deltas = jnp.take_along_axis(preds["box_deltas"].astype(jnp.float32),
                               labels[..., None, None], axis=2)[:, :, 0]
  proposals = preds["proposals"]
  target = _ROI_CODER.encode(proposals, jnp.where(fg[..., None], preds["roi_target_boxes"],
                                                  proposals))
  box = jnp.sum(losses.smooth_l1_loss(deltas, target, beta=beta), -1)
  roi_box = jnp.sum(jnp.where(fg, box, 0.0)) / count
  total = total + roi_cls + roi_box
  metrics.update(loss=total, roi_cls_loss=roi_cls, roi_box_loss=roi_box,
                 num_fg=jnp.sum(fg).astype(jnp.float32))
  return total, metrics
