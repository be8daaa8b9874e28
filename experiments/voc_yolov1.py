"""YOLOv1 as the paper (Redmon et al. 2016) on PASCAL VOC 2007 trainval, evaluated on VOC 2007
test (GPU). The paper trained on VOC 2007+2012 trainval; TFDS's `voc/2007` holds 2007 only.

The paper's recipe: 448 px, 7 x 7 grid, B = 2, its 24-conv network + 2 FC (dropout 0.5), SGD
momentum 0.9, weight decay 5e-4, batch 64, 135 epochs (5011 images: ~10.6k steps), learning
rate raised from 1e-3 to 1e-2 over the first epochs, 1e-2 for 75 epochs, 1e-3 for 30, 1e-4 for
30; augmentation with random scaling/translation up to 20% and HSV jitter (jaxdet's "default"
preset is the nearest). The paper pretrained the first 20 convolutions on ImageNet; with no
such checkpoint this trains from scratch with BatchNorm (set `init_from.checkpoint` to a
converted backbone, e.g. `--config.model.backbone=resnet50`, to transfer one).
"""

from jaxdet import models
from jaxdet.train.config import base_config


def get_config():
  c = base_config()
  c.dataset = "voc/2007"
  c.train_split = "train+validation"
  c.eval_split = "test"
  c.image_size = 448
  c.max_boxes = 64
  c.augment = "default"
  c.batch_size = 64
  c.eval_batch_size = 64
  c.total_steps = 10_600
  c.eval_every = 2_000
  c.checkpoint.every = 1_000
  c.compute_dtype = "bfloat16"
  c.data_workers = 8
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.9
  c.optimizer.learning_rate = 1e-2
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "step"
  c.optimizer.step_boundaries = (0.56, 0.78)  # epochs 75 and 105 of 135
  c.optimizer.step_factor = 0.1
  c.optimizer.warmup_steps = 300  # the paper's slow rise from 1e-3 in the first epochs
  c.model = models.default_config("yolov1")
  c.init_from.checkpoint = ""
  c.init_from.include_regex = "^backbone/"
  return c
