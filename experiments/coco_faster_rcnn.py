"""Faster R-CNN ResNet-50-FPN on COCO 2017, torchvision's recipe (26 epochs, GPU).

torchvision (references/detection): SGD momentum 0.9, lr 0.02 for batch 16, weight decay 1e-4,
linear warmup 1000 iterations, lr x0.1 at epochs 16 and 22 of 26, ImageNet ResNet-50 with
frozen BatchNorm and the stem and layer1 fixed (trainable_backbone_layers=3), horizontal flip.
jaxdet trains at a square 800 px letterbox (torchvision: shorter side 800, longer <= 1333).
"""

from jaxdet import models
from jaxdet.train.config import base_config

_STEPS_PER_EPOCH = 117_266 // 16


def get_config():
  c = base_config()
  c.dataset = "coco/2017"
  c.train_split = "train"
  c.eval_split = "validation"
  c.image_size = 800
  c.max_boxes = 100
  c.batch_size = 16
  c.eval_batch_size = 16
  c.total_steps = 26 * _STEPS_PER_EPOCH
  c.eval_every = 2 * _STEPS_PER_EPOCH
  c.checkpoint.every = 2_000
  c.compute_dtype = "bfloat16"
  c.data_workers = 16
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.9
  c.optimizer.learning_rate = 0.02
  c.optimizer.weight_decay = 1e-4
  c.optimizer.grad_clip_norm = 0.0
  c.optimizer.schedule = "step"
  c.optimizer.step_boundaries = (16 / 26, 22 / 26)
  c.optimizer.warmup_steps = 1_000
  c.optimizer.freeze_regex = r"^backbone/(stem|layer1_\d+)/"
  c.model = models.default_config("faster_rcnn")
  c.model.backbone = "resnet50"
  c.model.frozen_bn = True
  # ImageNet weights: `jaxdet convert torchvision --arch resnet50 ...`, then set this path.
  c.init_from.checkpoint = ""
  c.init_from.include_regex = "^backbone/"
  c.postprocess.score_threshold = 0.05
  c.postprocess.iou_threshold = 0.5
  c.postprocess.max_detections = 100
  # torchvision sends every (RoI, class) above the threshold to NMS: 1000 RoIs x 80 classes.
  c.postprocess.pre_nms_top_k = 1000 * 80
  return c
