"""TFDS's own `voc` and `coco` through the same pipeline, with ``tfds.testing.mock_data`` (random
records with mismatched sequence lengths and inverted boxes, which must be sanitized)."""

import chex
import numpy as np
import pytest

from jaxdet.data import ground_truth
from jaxdet.data import pipeline
from jaxdet.data import tfds_maps


@pytest.mark.parametrize("name,num_classes", [("voc/2007", 20), ("coco/2017", 80)])
def test_mock_voc_coco_through_pipeline(name, num_classes):
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=6):
    info = ground_truth.dataset_info(name)
    assert len(info.class_names) == num_classes
    for train in (False, True):
      it = pipeline.input_pipeline(name, "validation", batch_size=4, image_size=64, max_boxes=60,
                                   train=train, seed=0, shard_index=0, shard_count=1)
      for b in it:
        chex.assert_shape(b["image"], (4, 64, 64, 3))
        boxes = b["boxes"][b["box_mask"]]
        assert np.all(np.isfinite(boxes))
        assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
        assert boxes.min() >= 0 and boxes.max() <= 64
        classes = b["classes"][b["box_mask"]]
        assert classes.min(initial=0) >= 0 and classes.max(initial=0) < num_classes
        if train:
          break
    gt = ground_truth.coco_ground_truth(name, "validation")
    assert len(gt["images"]) == 6 and len(gt["categories"]) == num_classes
    for a in gt["annotations"]:
      assert a["bbox"][2] >= 0 and a["bbox"][3] >= 0


def test_to_jaxdet_record_fills_ids_and_flags():
  rec = {"image": np.zeros((4, 4, 3), np.uint8), "image/filename": b"2008_000123.jpg",
         "objects": {"bbox": np.zeros((2, 4), np.float32), "label": np.array([1, 2])}}
  out = tfds_maps.to_jaxdet_record(rec, 5)
  assert out["image/id"] == 2008000123
  np.testing.assert_array_equal(out["objects"]["is_crowd"], [False, False])
  np.testing.assert_array_equal(out["objects"]["is_difficult"], [False, False])
  assert tfds_maps.to_jaxdet_record({"image/filename": "abc"}, 5)["image/id"] == 5
