"""YOLOv1 on `shapes`, sized for a 2-core CPU (ResNet-18 at half width, 128 px, 8 x 8 grid)."""

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
  c.total_steps = 3000
  c.eval_every = 1500
  c.checkpoint.every = 250
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 5e-4
  c.optimizer.warmup_steps = 100
  c.optimizer.ema_decay = 0.999
  c.model = models.default_config("yolov1")
  c.model.backbone = "resnet18"
  c.model.backbone_width = 32
  c.model.grid_size = 8
  c.model.fc_hidden = 1024
  c.postprocess.score_threshold = 0.01
  return c
