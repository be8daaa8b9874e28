"""SSD on `shapes`, sized for a 2-core CPU: the nano CSP-Darknet backbone (as the `make demo`
YOLO) with SSD's head, default boxes, matching and hard negative mining at 256 px (shapes' own
size: at 128 px the smallest shapes, 8 px, were confused with each other; BENCHMARKS.md).

Levels c3, c4, c5 (32, 16, 8 px maps) + two stride-2 extra layers (4, 2): 5 levels, scales
0.07..0.75 of the input for `shapes`' objects (1/16 .. 1/2 of the image). SSD-VGG from scratch
needs far longer than a CPU run; `voc_ssd300.py` / `coco_ssd300.py` are the VGG recipes.
"""

from jaxdet import models
from jaxdet.data import preprocess
from jaxdet.models.detectors import ssd
from jaxdet.train.config import base_config


def get_config():
  c = base_config()
  c.dataset = "shapes"
  c.image_size = 256  # measured: 128 px gave AP 0.454 / AP50 0.674 at 2400 steps
  c.max_boxes = 16
  c.batch_size = 16
  c.eval_batch_size = 50
  # SSD's own augmentation preset ("ssd") is built on another branch; the short CPU schedule
  # uses none (as the YOLO demo, where "none" beat "default" at 1500-2400 steps).
  c.augment = "none"
  # Measured (BENCHMARKS.md): 1200 steps at lr 4e-3 with SSD's caffe-style normalization gave
  # AP 0.196 / AP50 0.333 only; this is the second run's setting.
  c.total_steps = 2400
  c.eval_every = 1200
  c.checkpoint.every = 250
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 7e-3
  c.optimizer.weight_decay = 5e-4
  c.optimizer.warmup_steps = 100
  c.optimizer.ema_decay = 0.999
  c.model = models.default_config("ssd")
  c.model.update(ssd.backbone_config("csp_darknet", width=0.25, depth=0.33))
  # Trained from scratch with BatchNorm: jaxdet's ImageNet normalization (SSD300's caffe-style
  # pixels, +-128, are for the VGG), keeping SSD's stretch resize.
  c.model.preprocess = preprocess.default_config()
  c.model.preprocess.resize = "stretch"
  c.model.update(extra_layers=((64, 128, 3, 2, 1), (64, 128, 3, 2, 1)),
                 aspect_ratios=((2,), (2, 3), (2, 3), (2, 3), (2,)),
                 scales=(0.07, 0.15, 0.3, 0.45, 0.6, 0.75), steps=())
  # SSD's postprocess: score 0.01, NMS 0.45, top 400 per class, 200 detections.
  c.postprocess.update(ssd.POSTPROCESS)
  return c
