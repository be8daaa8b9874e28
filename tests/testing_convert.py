"""Shared helpers of the tests that need a converted folder, without torch."""

import jax
import numpy as np


def write_classifier_folder(path, *, arch="resnet18", num_classes=3, image_size=64):
  """What `jaxdet convert torchvision --arch ARCH` writes for a classifier (model name
  `classifier`), with zero weights: the converter's own config and checkpoint writer.

  Returns:
    `path`, the folder written (`config.json`, `checkpoints/latest/0`).
  """
  from jaxdet.convert import torchvision as tv_convert
  from jaxdet.convert.checkpoint import write_checkpoint
  from jaxdet.models import backbones
  config = tv_convert.classifier_config(arch, num_classes=num_classes, image_size=image_size)
  module = backbones.build_classifier(arch, num_classes, config=config.model)
  abstract = jax.eval_shape(lambda: module.init(
      jax.random.key(0), np.zeros((1, image_size, image_size, 3), np.float32)))
  variables = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract)
  write_checkpoint(path, config, variables, class_names=[str(i) for i in range(num_classes)],
                   source={"framework": "torchvision", "arch": arch})
  return path
