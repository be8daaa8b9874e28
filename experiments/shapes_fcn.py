"""FCN-8s (VGG-16-BN at an eighth of its widths) on `shapes` semantic masks, for a 2-core CPU.

Needs `shapes` 2.0.0 (the `segmentation/mask` feature: 0 background, 1..C the shapes' classes).
5000 steps reach validation mIoU 0.830 in 16 min of training on a quiet 2-core AMD EPYC
(3000 steps: 0.789-0.809; BENCHMARKS.md).
"""

from jaxdet.models import segmentation
from jaxdet.train.config import base_config


def get_config():
  c = base_config()
  c.dataset = "shapes"
  c.image_size = 128
  c.batch_size = 16
  c.eval_batch_size = 50
  c.total_steps = 5000
  c.eval_every = 1000
  c.checkpoint.every = 250
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.warmup_steps = 100
  c.optimizer.ema_decay = 0.999
  c.model = segmentation.default_config("fcn")
  c.model.backbone = "vgg16_bn"  # BatchNorm: trains from scratch
  c.model.variant = "8s"
  c.model.width_divisor = 8  # widths 8..64
  c.model.fc_width = 128
  c.model.fc_dropout = 0.1
  c.model.paper_padding = False  # pad 1 (not 100): a 128 px input stays 128 px inside
  return c
