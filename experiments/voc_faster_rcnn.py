"""Faster R-CNN ResNet-50-FPN on PASCAL VOC 2007+2012 trainval, evaluated on VOC 2007 test (GPU).

torchvision's detection recipe scaled to VOC's size: SGD momentum 0.9, lr 0.02 for batch 16,
weight decay 1e-4, warmup, lr x0.1 at 2/3 and 8/9 of training, frozen-BN ImageNet ResNet-50
(stem and layer1 fixed).
"""

from jaxdet import models
from jaxdet.train.config import base_config


def get_config():
  c = base_config()
  c.dataset = "voc/2007"
  c.train_split = "train+validation"
  c.eval_split = "test"
  c.image_size = 608
  c.max_boxes = 64
  c.augment = "default"
  c.batch_size = 16
  c.eval_batch_size = 16
  c.total_steps = 18_000
  c.eval_every = 2_000
  c.checkpoint.every = 1_000
  c.compute_dtype = "bfloat16"
  c.data_workers = 8
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.9
  c.optimizer.learning_rate = 0.02
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "step"
  c.optimizer.step_boundaries = (0.667, 0.889)
  c.optimizer.warmup_steps = 500
  c.optimizer.freeze_regex = r"^backbone/(stem|layer1_\d+)/"
  c.model = models.default_config("faster_rcnn")
  c.model.backbone = "resnet50"
  c.model.frozen_bn = True
  c.init_from.checkpoint = ""  # an ImageNet (or COCO) checkpoint converted to jaxdet layout
  c.init_from.include_regex = "^backbone/"
  c.postprocess.pre_nms_top_k = 1000 * 20
  return c
