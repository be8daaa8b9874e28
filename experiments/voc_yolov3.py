"""YOLOv3 (`yolov3.cfg`, Darknet-53) on Pascal VOC 07+12 at 416 px, for a GPU.

Darknet's recipe scaled to 64 images a batch: SGD-like AdamW warmup, cosine decay, standard COCO
anchors (VOC objects are similar in scale); fine-tune from a converted COCO model with
`--config.init_from.checkpoint=DIR --config.init_from.include_regex='^layer_([0-9]|[1-6][0-9]|7[0-4])_'`
(the Darknet-53 backbone, layers 0-74). Not run on this CPU machine.
"""

from jaxdet import models
from jaxdet.train.config import base_config


def get_config():
  c = base_config()
  c.dataset = "voc/2007"  # TFDS voc; add voc/2012 by importing it (README, Data)
  c.train_split = "train+validation"
  c.eval_split = "test"
  c.image_size = 416
  c.max_boxes = 64
  c.batch_size = 64
  c.eval_batch_size = 64
  c.augment = "full"  # mosaic, mixup: jaxdet.data presets
  c.total_steps = 40_000
  c.eval_every = 5_000
  c.checkpoint.every = 1_000
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 5e-4
  c.optimizer.warmup_steps = 1_000
  c.optimizer.schedule = "cosine"
  c.optimizer.ema_decay = 0.9999
  c.model = models.default_config("yolov3")
  c.model.cfg = "yolov3"
  c.postprocess.score_threshold = 0.005
  c.postprocess.iou_threshold = 0.45
  return c
