"""jaxdet.data: TFDS datasets (`shapes`, imported user data, TFDS voc/coco), the input pipeline,
box-aware augmentation and drawing helpers.

Attributes are imported lazily so that light modules (``preprocess``, ``shapes_render``,
``draw``) can be used in worker processes without importing TensorFlow / TFDS / grain.
"""

import importlib

_LAZY = {
    "input_pipeline": ("jaxdet.data.pipeline", "input_pipeline"),
    "eval_example": ("jaxdet.data.pipeline", "eval_example"),
    "dataset_info": ("jaxdet.data.ground_truth", "dataset_info"),
    "DatasetInfo": ("jaxdet.data.ground_truth", "DatasetInfo"),
    "coco_ground_truth": ("jaxdet.data.ground_truth", "coco_ground_truth"),
    "has_boxes": ("jaxdet.data.ground_truth", "has_boxes"),
    "mask_examples": ("jaxdet.data.ground_truth", "mask_examples"),
    "AugmentConfig": ("jaxdet.data.augment", "AugmentConfig"),
    "draw_detections": ("jaxdet.data.draw", "draw_detections"),
    "save_grid": ("jaxdet.data.draw", "save_grid"),
    "colorize_mask": ("jaxdet.data.draw", "colorize_mask"),
    "overlay_mask": ("jaxdet.data.draw", "overlay_mask"),
    "mask_to_input": ("jaxdet.data.masks", "mask_to_input"),
    "normalize_image": ("jaxdet.data.preprocess", "normalize_image"),
    "letterbox_image": ("jaxdet.data.preprocess", "letterbox_image"),
    "letterbox_scale": ("jaxdet.data.preprocess", "letterbox_scale"),
    "MEAN_RGB": ("jaxdet.data.preprocess", "MEAN_RGB"),
    "STD_RGB": ("jaxdet.data.preprocess", "STD_RGB"),
    "build_shapes": ("jaxdet.data.shapes", "build"),
}

__all__ = sorted(_LAZY)


def __getattr__(name):
  if name in _LAZY:
    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)
  raise AttributeError(f"module 'jaxdet.data' has no attribute {name!r}")
