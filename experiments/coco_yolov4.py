"""YOLOv4 (`yolov4.cfg`: CSPDarknet-53, Mish, SPP, PANet, scale_x_y) on COCO 2017 at 608 px, for
GPUs.

The v4 loss: CIoU, several anchors per object above `iou_thresh` (0.213 in the cfg), label
smoothing 0.01; cosine schedule; mosaic through the `full` augmentation preset. Darknet trains
500k steps of 64; this is a shorter schedule for a GPU node. Not run on this CPU machine.
"""

from jaxdet import models
from jaxdet.train.config import base_config


def get_config():
  c = base_config()
  c.dataset = "coco/2017"
  c.train_split = "train"
  c.eval_split = "validation"
  c.image_size = 608
  c.max_boxes = 100
  c.batch_size = 64
  c.eval_batch_size = 32
  c.augment = "full"
  c.total_steps = 300_000
  c.eval_every = 10_000
  c.checkpoint.every = 2_000
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 5e-4
  c.optimizer.warmup_steps = 1_000
  c.optimizer.schedule = "cosine"
  c.optimizer.ema_decay = 0.9999
  c.model = models.default_config("yolov4")
  c.model.cfg = "yolov4"
  c.postprocess.score_threshold = 0.001
  c.postprocess.iou_threshold = 0.6
  c.postprocess.max_detections = 300
  return c
