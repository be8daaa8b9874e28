"""The TFDS feature spec shared by every jaxdet dataset (see DESIGN.md)."""

import numpy as np
import tensorflow_datasets as tfds

from jaxdet.data.masks import MASK_FEATURE


def mask_feature():
  """The ``segmentation/mask`` feature: one channel, PNG-encoded (lossless; store
  ``jaxdet.data.masks.encode_mask`` bytes)."""
  return tfds.features.Image(shape=(None, None, 1), encoding_format="png")


def detection_features(class_names, *, encoding_format=None, with_filename=False,
                       with_masks=False):
  """FeaturesDict of a detection dataset.

  ``image`` uint8 ``[H, W, 3]``, ``image/id`` int64, ``objects/bbox`` float32 ``[n, 4]`` as TFDS
  ``(ymin, xmin, ymax, xmax)`` normalized to [0, 1], ``objects/label`` int64 ``[n]`` (class names
  in the ClassLabel), ``objects/is_crowd`` and ``objects/is_difficult`` bool ``[n]``. Imported
  datasets add ``image/filename``; datasets with masks add ``segmentation/mask`` uint8
  ``[H, W, 1]`` (PNG; 0 = background, label + 1, 255 = ignore; read back squeezed to ``[H, W]``).

  Args:
    class_names: sequence of class names (label ids index it).
    encoding_format: ``"jpeg"``, ``"png"`` or None (keep the bytes given).
    with_filename: add the ``image/filename`` text feature.
    with_masks: add the ``segmentation/mask`` feature (``mask_feature``).

  Returns:
    ``tfds.features.FeaturesDict``.
  """
  spec = {
      "image": tfds.features.Image(shape=(None, None, 3), encoding_format=encoding_format),
      "image/id": np.int64,
      "objects": tfds.features.Sequence({
          "bbox": tfds.features.BBoxFeature(),
          "label": tfds.features.ClassLabel(names=list(class_names)),
          "is_crowd": np.bool_,
          "is_difficult": np.bool_,
      }),
  }
  if with_filename:
    spec["image/filename"] = tfds.features.Text()
  if with_masks:
    spec[MASK_FEATURE] = mask_feature()
  return tfds.features.FeaturesDict(spec)
