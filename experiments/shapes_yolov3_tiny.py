"""YOLOv3-tiny (`yolov3-tiny.cfg`, `yolov3` family) on `shapes`, sized for a 2-core CPU.

The standard cfg at quarter width (`model.width = 0.25`), 256 px (shapes' own size: the 4x4
and 8x8 grids at 128 px were too coarse, BENCHMARKS.md), anchors for the shapes objects
(16..128 px, log-uniform) instead of COCO's at 416 px. Results and times: BENCHMARKS.md.
"""

from jaxdet import models
from jaxdet.train.config import base_config


def get_config():
  c = base_config()
  c.dataset = "shapes"
  c.image_size = 256
  c.max_boxes = 16
  c.batch_size = 16
  c.eval_batch_size = 50
  c.augment = "none"
  # Measured (BENCHMARKS.md): 2400 steps gave AP 0.583 / AP50 0.911; 4800 give 0.616 / 0.930.
  c.total_steps = 4800
  c.eval_every = 2400
  c.checkpoint.every = 250
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 5e-3
  c.optimizer.weight_decay = 5e-4
  c.optimizer.warmup_steps = 100
  c.optimizer.schedule = "cosine"
  c.optimizer.ema_decay = 0.999
  c.model = models.default_config("yolov3")
  c.model.cfg = "yolov3-tiny"
  c.model.width = 0.25
  c.model.anchors = "18,20, 32,28, 28,48, 52,52, 72,88, 116,112"
  c.postprocess.score_threshold = 0.01
  c.postprocess.iou_threshold = 0.5
  return c
