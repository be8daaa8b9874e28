"""RetinaNet (ResNet-18-FPN, slim) on `shapes`, sized for a 2-core CPU."""

from jaxdet import models
from jaxdet.train.config import base_config


def get_config():
  c = base_config()
  c.dataset = "shapes"
  c.image_size = 128
  c.max_boxes = 16
  c.batch_size = 16
  c.eval_batch_size = 50
  c.total_steps = 2000
  c.eval_every = 1000
  c.checkpoint.every = 250
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 100
  c.optimizer.ema_decay = 0.999
  c.model = models.default_config("retinanet")
  c.model.backbone = "resnet18"
  c.model.backbone_width = 32  # half-width ResNet-18 for CPU
  c.model.fpn_features = 64
  c.model.head_convs = 2
  c.model.p6_from = "c5"
  # Objects span ~7-64 px at 128 px input: anchors 16..256 (3 scales per level).
  c.model.anchor_sizes = tuple(tuple(s * 2 ** (i / 3) for i in range(3)) for s in (16, 32, 64, 128, 256))
  c.model.box_loss = "giou"
  # A low threshold costs nothing in AP and raises recall (measured: AP50 0.785 -> 0.792).
  c.postprocess.score_threshold = 0.01
  return c
