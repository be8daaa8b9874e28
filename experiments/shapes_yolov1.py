"""YOLOv1 on `shapes`, sized for a 2-core CPU.

ResNet-18 (half width) at 128 px, its stride-16 map as an 8 x 8 grid, B = 2, and the conv head
(`head="conv"`: each cell predicted from its own features; the paper's FC head learns too slowly
for a CPU budget: AP50 0.001 after 300 steps). Loss, decode and the one-object-per-cell rule are
the paper's. No augmentation and little dropout for this short schedule.
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
  # Measured (BENCHMARKS.md): 2000 steps at lr 2e-3 gave AP50 0.701; 3000 at 5e-3 gave 0.839.
  c.total_steps = 3000
  c.eval_every = 1500
  c.checkpoint.every = 250
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 5e-3
  c.optimizer.weight_decay = 5e-4
  c.optimizer.warmup_steps = 100
  c.model = models.default_config("yolov1")
  c.model.backbone = "resnet18"
  c.model.backbone_width = 32
  c.model.feature_level = "c4"  # 8 x 8 at 128 px
  c.model.grid_size = 8
  c.model.head = "conv"
  c.model.fc_hidden = 128
  c.model.dropout = 0.1
  c.postprocess.score_threshold = 0.01
  return c
