"""torchvision's FCN-ResNet50 (dilated, output stride 8, aux head 0.5) on Pascal VOC
segmentation, for a GPU; torchvision's reference recipe (SGD 0.02, momentum 0.9, wd 1e-4).

Data as `voc_fcn8s.py` (an imported `voc_seg` with masks). ImageNet backbone: `jaxdet convert
torchvision --arch resnet50 --weights resnet50.pth --output runs/r50`, then
`--config.init_from.checkpoint=runs/r50`. A converted torchvision FCN (`--arch fcn_resnet50`)
fine-tunes in its own folder: `jaxdet train --workdir runs/fcn50 --config.dataset=voc_seg`.
"""

import ml_collections

from jaxdet.convert.torchvision import IMAGENET_PREPROCESS
from jaxdet.models import segmentation
from jaxdet.train.config import base_config


def get_config():
  c = base_config()
  c.dataset = "voc_seg"
  c.image_size = 480
  c.batch_size = 16
  c.eval_batch_size = 16
  c.total_steps = 30000
  c.eval_every = 2000
  c.checkpoint.every = 1000
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.02
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 1e-4
  c.optimizer.warmup_steps = 500
  c.init_from.checkpoint = ""  # an ImageNet ResNet-50 (see the docstring)
  c.init_from.include_regex = "^backbone/"
  c.model = segmentation.default_config("fcn")
  c.model.backbone = "resnet50"
  c.model.aux = True
  c.model.aux_weight = 0.5
  c.model.preprocess = ml_collections.ConfigDict(IMAGENET_PREPROCESS)  # ImageNet weights'
  return c
