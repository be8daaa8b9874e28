"""RetinaNet ResNet-50-FPN on COCO 2017 (the torchvision 1x-style schedule, GPU)."""

from jaxdet import models
from jaxdet.train.config import base_config


def get_config():
  c = base_config()
  c.dataset = "coco/2017"
  c.train_split = "train"
  c.eval_split = "validation"
  c.image_size = 800
  c.max_boxes = 100
  c.batch_size = 16
  c.eval_batch_size = 16
  c.total_steps = 90_000
  c.eval_every = 10_000
  c.checkpoint.every = 2_000
  c.compute_dtype = "bfloat16"
  c.data_workers = 16
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.9
  c.optimizer.learning_rate = 0.01
  c.optimizer.weight_decay = 1e-4
  c.optimizer.grad_clip_norm = 0.0
  c.optimizer.schedule = "step"
  c.optimizer.step_boundaries = (0.667, 0.889)
  c.optimizer.warmup_steps = 1_000
  c.model = models.default_config("retinanet")
  c.model.backbone = "resnet50"
  c.model.frozen_bn = True
  c.init_from.include_regex = "^backbone/"
  c.postprocess.score_threshold = 0.05
  c.postprocess.iou_threshold = 0.5
  c.postprocess.max_detections = 100
  return c
