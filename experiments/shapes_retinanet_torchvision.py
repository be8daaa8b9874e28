"""Fine-tuning a converted torchvision RetinaNet (ResNet-50-FPN, v1) on `shapes`' classes.

The network and preprocessing are torchvision's `retinanet_resnet50_fpn`, so its converted
backbone and FPN load as they are; the heads start anew for the new classes:

  jaxdet convert torchvision --arch retinanet_resnet50_fpn --weights retinanet.pth --output runs/rn50
  jaxdet train --config experiments/shapes_retinanet_torchvision.py --workdir runs/ft \
      --config.init_from.checkpoint=runs/rn50

ResNet-50 at 256 px is slow on a CPU (a GPU recipe; not measured here).
"""

from jaxdet import models
from jaxdet.convert import torchvision as tv
from jaxdet.train.config import base_config


def get_config():
  c = base_config()
  c.dataset = "shapes"
  c.max_boxes = 16
  c.batch_size = 16
  c.eval_batch_size = 16
  c.total_steps = 2000
  c.eval_every = 1000
  c.checkpoint.every = 250
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.9
  c.optimizer.learning_rate = 0.01
  c.optimizer.weight_decay = 1e-4
  c.optimizer.warmup_steps = 100
  # torchvision's fine-tuning keeps the stem and layer1 fixed (trainable_backbone_layers=3).
  c.optimizer.freeze_regex = r"^backbone/(stem|layer1_\d+)/"
  c.model = models.default_config("retinanet")  # torchvision's v1 architecture
  c.model.frozen_bn = True
  # torchvision's preprocessing at shapes' 256 px: min_size = max_size = 256.
  c.model.preprocess, c.image_size = tv.rcnn_preprocess(image_size=256)
  # The backbone and FPN come from the converted folder; the class and box heads are new.
  c.init_from.include_regex = "^(backbone|fpn)/"
  c.postprocess.score_threshold = 0.05
  return c
