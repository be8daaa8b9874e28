"""YOLOv3-tiny (`yolov3-tiny.cfg`, `yolov3` family) on `shapes`, sized for a 2-core CPU.

The standard cfg at half width (`model.width = 0.5`), 128 px, with anchors for the shapes objects
(8..64 px at 128 px, log-uniform) instead of COCO's at 416 px. Results and times: BENCHMARKS.md.
"""

from jaxdet import models
from jaxdet.train.config import base_config


def get_config():
  c = base_config()
  c.dataset = "shapes"
  c.image_size = 128
  c.max_boxes = 16
  c.batch_size = 16
  c.eval_batch_size = 50
  c.augment = "none"
  c.total_steps = 2400
  c.eval_every = 1200
  c.checkpoint.every = 250
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 3e-3
  c.optimizer.weight_decay = 5e-4
  c.optimizer.warmup_steps = 100
  c.optimizer.schedule = "cosine"
  c.optimizer.ema_decay = 0.999
  c.model = models.default_config("yolov3")
  c.model.cfg = "yolov3-tiny"
  c.model.width = 0.5
  c.model.anchors = "9,10, 16,14, 14,24, 26,26, 36,44, 58,56"
  c.postprocess.score_threshold = 0.01
  c.postprocess.iou_threshold = 0.5
  return c
