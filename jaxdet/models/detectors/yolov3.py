"""`yolov3`: YOLOv3 (Darknet-53, three scales, leaky ReLU; also yolov3-tiny and yolov3-spp), from a Darknet cfg.

The network is a Darknet `.cfg` (`config.model.cfg`, a built-in name such as "yolov3" or
"yolov3-tiny", or the whole text in `config.model.cfg_text`, as `jaxdet convert darknet` writes);
`jaxdet.models.darknet` runs it and holds decode and the loss (`config.model.loss = "v3"`).
"""

import ml_collections

from jaxdet.models import darknet

name = "yolov3"  # registered name: this file's name and `config.model.name`

build = darknet.build
decode = darknet.decode
loss_fn = darknet.loss_fn
level_sizes = darknet.level_sizes


def default_config() -> ml_collections.ConfigDict:
  """The `config.model` block: the standard yolov3.cfg with the v3 loss."""
  return darknet.base_config(name, "yolov3", "v3")


def test_config() -> ml_collections.ConfigDict:
  """A tiny cfg (two yolo layers, 64 px) for the contract and export tests."""
  c = default_config()
  c.cfg_text = darknet.TEST_CFG_V3
  return c
