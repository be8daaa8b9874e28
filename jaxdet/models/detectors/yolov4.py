"""`yolov4`: YOLOv4 (CSPDarknet-53 with Mish, SPP, PANet, scale_x_y; also yolov4-tiny), from a Darknet cfg.

The network is a Darknet `.cfg` (`config.model.cfg`, a built-in name such as "yolov4" or
"yolov4-tiny", or the whole text in `config.model.cfg_text`, as `jaxdet convert darknet` writes);
`jaxdet.models.darknet` runs it and holds decode and the loss (`config.model.loss = "v4"`).
"""

import ml_collections

from jaxdet.models import darknet

name = "yolov4"  # registered name: this file's name and `config.model.name`

build = darknet.build
decode = darknet.decode
loss_fn = darknet.loss_fn
level_sizes = darknet.level_sizes


def default_config() -> ml_collections.ConfigDict:
  """The `config.model` block: the standard yolov4.cfg with the v4 loss."""
  return darknet.base_config(name, "yolov4", "v4")


def test_config() -> ml_collections.ConfigDict:
  """A tiny cfg (two yolo layers, 64 px) for the contract and export tests."""
  c = default_config()
  c.cfg_text = darknet.TEST_CFG_V4
  return c
