"""SSD300 (VGG-16) on COCO 2017, torchvision's recipe for `ssd300_vgg16` (25.1 box mAP; GPU).

torchvision references/detection: 120 epochs at batch 32 (8 GPUs x 4), SGD momentum 0.9,
lr 0.002 divided by 10 at epochs 80 and 110, weight decay 5e-4, `--data-augmentation ssd`
(`augment = "ssd"`), ImageNet VGG-16 convolutions (`init_from`, see `voc_ssd300.py`), the first
VGG block frozen (`trainable_backbone_layers=4`). 118k images / 32 = 3.7k steps per epoch.
"""

from jaxdet import models
from jaxdet.models.detectors import ssd
from jaxdet.train.config import base_config

_STEPS_PER_EPOCH = 3_697


def get_config():
  c = base_config()
  c.dataset = "coco/2017"
  c.train_split = "train"
  c.eval_split = "validation"
  c.image_size = 300
  c.max_boxes = 100
  c.augment = "ssd"
  c.batch_size = 32
  c.eval_batch_size = 32
  c.total_steps = 120 * _STEPS_PER_EPOCH
  c.eval_every = 10 * _STEPS_PER_EPOCH
  c.checkpoint.every = 2_000
  c.data_workers = 16
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.9
  c.optimizer.learning_rate = 0.002
  c.optimizer.weight_decay = 5e-4
  c.optimizer.grad_clip_norm = 0.0
  c.optimizer.schedule = "step"
  c.optimizer.step_boundaries = (80 / 120, 110 / 120)
  c.optimizer.step_factor = 0.1
  c.optimizer.warmup_steps = 1_000  # torchvision's first-epoch linear warmup
  c.optimizer.freeze_regex = r"^backbone/conv1_\d+/"
  c.model = models.default_config("ssd")
  c.init_from.checkpoint = ""  # a converted ImageNet vgg16 folder
  c.init_from.include_regex = "^backbone/conv"
  c.postprocess.update(ssd.POSTPROCESS)
  return c
