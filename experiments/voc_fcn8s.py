"""FCN-8s on VGG-16 (the paper's net: first conv padded by 100, crops 5/9/31) on Pascal VOC
segmentation, for a GPU.

Data: VOC's `SegmentationClass` masks imported as a dataset (`jaxdet data import --format voc
... --masks --name voc_seg`; 255 = boundary/ignore). Backbone from ImageNet: convert torchvision's
VGG-16 (`jaxdet convert torchvision --arch vgg16 --weights vgg16.pth --output runs/vgg16`) and
pass `--config.init_from.checkpoint=runs/vgg16` (copies `backbone/`; fc6/fc7 start from scratch:
the classifier's fc1/fc2 are not reshaped into the 7x7 / 1x1 convs).
"""

from jaxdet.models import segmentation
from jaxdet.train.config import base_config


def get_config():
  c = base_config()
  c.dataset = "voc_seg"
  c.train_split = "train"
  c.eval_split = "validation"
  c.image_size = 512
  c.batch_size = 16
  c.eval_batch_size = 16
  c.total_steps = 30000
  c.eval_every = 2000
  c.checkpoint.every = 1000
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.01
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.warmup_steps = 500
  c.init_from.checkpoint = ""  # an ImageNet VGG-16 (see the docstring)
  c.init_from.include_regex = "^backbone/"
  c.model = segmentation.default_config("fcn")
  c.model.backbone = "vgg16"
  c.model.variant = "8s"
  c.model.paper_padding = True
  return c
