"""The TFDS feature spec shared by every jaxdet dataset (see DESIGN.md)."""

import numpy as np
import tensorflow_datasets as tfds


def detection_features(class_names, *, encoding_format=None, with_filename=False):
  """FeaturesDict of a detection dataset.

  ``image`` uint8 ``[H, W, 3]``, ``image/id`` int64, ``objects/bbox`` float32 ``[n, 4]`` as TFDS
  ``(ymin, xmin, ymax, xmax)`` normalized to [0, 1], ``objects/label`` int64 ``[n]`` (class names
  in the ClassLabel), ``objects/is_crowd`` and ``objects/is_difficult`` bool ``[n]``. Imported
  datasets add ``image/filename``.

  Args:
    class_names: sequence of class names (label ids index it).
    encoding_format: ``"jpeg"``, ``"png"`` or None (keep the bytes given).
    with_filename: add the ``image/filename`` text feature.

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
  return tfds.features.FeaturesDict(spec)
