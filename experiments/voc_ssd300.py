"""SSD300 (VGG-16) on PASCAL VOC, the paper's recipe (Liu et al. 2016, Sec. 3.3; GPU).

SGD momentum 0.9, weight decay 5e-4, batch 32, lr 1e-3 for 40k iterations, then 1e-4 and 1e-5
for 10k each; SSD's augmentation (`augment = "ssd"`, the `jaxdet.data` preset); the VGG-16
convolutions from ImageNet (`jaxdet convert torchvision --arch vgg16 --weights ... --output
runs/vgg16`, then `--config.init_from.checkpoint=runs/vgg16`); fc6/fc7, extras and heads start
from Xavier as torchvision's. The paper trains on VOC2007+2012 trainval: import both devkits as
one dataset (`jaxdet data import --format voc ...`) and point `dataset` at it; as written the
config uses TFDS `voc/2007` trainval and evaluates on the 2007 test split.
"""

from jaxdet import models
from jaxdet.models.detectors import ssd
from jaxdet.train.config import base_config


def get_config():
  c = base_config()
  c.dataset = "voc/2007"
  c.train_split = "train+validation"
  c.eval_split = "test"
  c.image_size = 300
  c.max_boxes = 64
  c.augment = "ssd"
  c.batch_size = 32
  c.eval_batch_size = 32
  c.total_steps = 60_000
  c.eval_every = 5_000
  c.checkpoint.every = 2_000
  c.data_workers = 8
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.9
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 5e-4
  c.optimizer.grad_clip_norm = 0.0
  c.optimizer.schedule = "step"
  c.optimizer.step_boundaries = (40 / 60, 50 / 60)
  c.optimizer.step_factor = 0.1
  c.optimizer.warmup_steps = 500
  c.model = models.default_config("ssd")  # SSD300-VGG16, torchvision's preprocessing
  c.init_from.checkpoint = ""  # a converted ImageNet vgg16 folder
  c.init_from.include_regex = "^backbone/conv"
  c.postprocess.update(ssd.POSTPROCESS)
  return c
