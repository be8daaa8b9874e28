"""RetinaNet ResNet-50-FPN on PASCAL VOC 2007+2012 trainval, evaluated on VOC 2007 test (GPU)."""

from jaxdet import models
from jaxdet.train.config import base_config


def get_config():
  c = base_config()
  c.dataset = "voc/2007"
  c.train_split = "train+validation"
  c.eval_split = "test"
  c.image_size = 512
  c.max_boxes = 64
  c.augment = "default"
  c.batch_size = 32
  c.eval_batch_size = 32
  c.total_steps = 20_000
  c.eval_every = 2_000
  c.checkpoint.every = 1_000
  c.compute_dtype = "bfloat16"
  c.data_workers = 8
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = True
  c.optimizer.learning_rate = 0.02
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_steps = 500
  c.optimizer.ema_decay = 0.9998
  c.model = models.default_config("retinanet")
  c.model.backbone = "resnet50"
  c.model.frozen_bn = True
  c.model.box_loss = "giou"
  # Transfer learning: point at an ImageNet (or COCO) checkpoint converted to jaxdet layout.
  c.init_from.checkpoint = ""
  c.init_from.include_regex = "^backbone/"
  return c
