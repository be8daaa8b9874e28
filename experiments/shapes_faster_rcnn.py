"""Faster R-CNN (ResNet-18-FPN, slim) on `shapes`, sized for a 2-core CPU."""

from jaxdet import models
from jaxdet.train.config import base_config


def get_config():
  c = base_config()
  c.dataset = "shapes"
  c.image_size = 128
  c.max_boxes = 16
  c.batch_size = 8
  c.eval_batch_size = 50
  # Measured (BENCHMARKS.md): 1000 steps gave AP 0.529 / AP50 0.693; 3000 give 0.779 / 0.923.
  c.total_steps = 3000
  c.eval_every = 1500
  c.checkpoint.every = 250
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 100
  c.optimizer.ema_decay = 0.999
  c.augment = "none"  # short CPU schedule: plain batches converge faster (as the YOLO demo)
  c.model = models.default_config("faster_rcnn")
  c.model.backbone = "resnet18"
  c.model.backbone_width = 32  # half-width ResNet-18 for CPU
  c.model.fpn_features = 64
  c.model.representation_size = 256
  # Objects span ~7-64 px at 128 px input: one anchor size per level P2..P6, 3 ratios.
  c.model.anchor_sizes = ((16.0,), (32.0,), (64.0,), (128.0,), (256.0,))
  c.model.rpn_pre_nms_top_n_train = 1000
  c.model.rpn_pre_nms_top_n_test = 500
  c.model.rpn_post_nms_top_n_train = 300
  c.model.rpn_post_nms_top_n_test = 200
  c.model.rpn_batch_size = 128
  c.model.roi_batch_size = 128
  c.postprocess.score_threshold = 0.01
  c.postprocess.pre_nms_top_k = 1000
  return c
