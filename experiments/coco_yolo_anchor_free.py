"""Anchor-free YOLO-style detector (`yolo_anchor_free`: CSP-Darknet-S + PAN) on COCO 2017 (GPU)."""

from jaxdet import models
from jaxdet.train.config import base_config


def get_config():
  c = base_config()
  c.dataset = "coco/2017"
  c.train_split = "train"
  c.eval_split = "validation"
  c.max_boxes = 100
  c.batch_size = 16
  c.eval_batch_size = 16
  c.total_steps = 90_000
  c.eval_every = 10_000
  c.checkpoint.every = 2_000
  c.compute_dtype = "bfloat16"
  c.data_workers = 16
  c.image_size = 640
  c.augment = "full"
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.937
  c.optimizer.nesterov = True
  c.optimizer.learning_rate = 0.01
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = 3_000
  c.optimizer.ema_decay = 0.9999
  c.model = models.default_config("yolo_anchor_free")
  c.model.width = 0.5
  c.model.depth = 0.33
  c.init_from.include_regex = "^backbone/"
  c.postprocess.score_threshold = 0.05
  c.postprocess.iou_threshold = 0.65
  c.postprocess.max_detections = 100
  return c
