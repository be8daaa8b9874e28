"""FCN-8s (VGG-16-BN at an eighth of its widths) on `shapes` semantic masks, for a 2-core CPU.

Needs `shapes` with its `segmentation/mask` feature (the segmentation data stage); mask 0 is
background and 1..C the shapes' classes. Not yet run on that dataset: on stand-in data (the
shapes renderer's own masks at 128 px, flips only) 1000 steps of this net reached mIoU 0.663
(0.447 at 500) in 20 min on a loaded 2-core EPYC (BENCHMARKS.md), still rising; 3000 steps are
the guess for the 0.8 target.
"""

from jaxdet.models import segmentation
from jaxdet.train.config import base_config


def get_config():
  c = base_config()
  c.dataset = "shapes"
  c.image_size = 128
  c.batch_size = 16
  c.eval_batch_size = 50
  c.total_steps = 3000
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
