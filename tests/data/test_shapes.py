import io

import numpy as np
from PIL import Image
import pytest

from jaxdet.data import shapes_render


def test_render_deterministic_and_seed_dependent():
  a = shapes_render.render([0, 0, 5])
  b = shapes_render.render([0, 0, 5])
  c = shapes_render.render([0, 0, 6])
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("index", range(12))
def test_boxes_are_tight_boxes_of_visible_pixels(index):
  image, boxes, labels, owner = shapes_render.render([3, 0, index], return_owner=True)
  assert image.shape == (256, 256, 3) and image.dtype == np.uint8
  assert len(boxes) == len(labels) <= shapes_render.MAX_OBJECTS
  for k in range(len(boxes)):
    # Plain loop oracle over all pixels.
    xs, ys = [], []
    for y in range(owner.shape[0]):
      row = np.nonzero(owner[y] == k)[0]
      if len(row):
        ys.append(y)
        xs.extend([row.min(), row.max()])
    assert ys, "every annotated object has visible pixels"
    np.testing.assert_array_equal(boxes[k], [min(xs), min(ys), max(xs) + 1, max(ys) + 1])
  assert set(np.unique(owner)) <= set(range(-1, len(boxes)))


def test_dataset_statistics_span_classes_sizes_and_counts():
  counts, areas, labels = [], [], []
  for i in range(60):
    _, boxes, lab = shapes_render.render([0, 0, i])
    counts.append(len(lab))
    labels.extend(lab)
    areas.extend((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
  areas = np.asarray(areas)
  assert set(labels) == set(range(len(shapes_render.CLASS_NAMES))) and len(set(labels)) >= 6
  assert (areas < 32**2).any() and ((areas >= 32**2) & (areas < 96**2)).any()
  assert (areas >= 96**2).any()
  assert min(counts) <= 2 and max(counts) >= 12 and max(counts) <= 15


def test_tfds_build_and_read(tiny_data_dir):
  import tensorflow_datasets as tfds
  from jaxdet.data import shapes
  b = tfds.builder("shapes/tiny", data_dir=tiny_data_dir)
  assert {k: v.num_examples for k, v in b.info.splits.items()} == {
      "train": 32, "validation": 8, "test": 8}
  assert b.info.features["objects"]["label"].names == list(shapes_render.CLASS_NAMES)
  source = tfds.data_source("shapes/tiny", split="validation", data_dir=tiny_data_dir)
  ids = set()
  for i in range(len(source)):
    rec = source[i]
    ids.add(int(rec["image/id"]))
    index = int(rec["image/id"]) % 10_000_000
    image, boxes, labels = shapes.render_split_image(index, split="validation", config="tiny")
    # Stored as JPEG (quality 95): equal to a PIL JPEG round trip of the rendered image.
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=95)
    np.testing.assert_array_equal(rec["image"], np.asarray(Image.open(buf)))
    bbox = np.asarray(rec["objects"]["bbox"], np.float32).reshape(-1, 4)
    np.testing.assert_allclose(bbox, boxes[:, [1, 0, 3, 2]] / 256, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(rec["objects"]["label"]).reshape(-1), labels)
  assert len(ids) == 8


@pytest.mark.parametrize("index", range(4))
def test_semantic_mask_is_label_plus_one_of_the_visible_shape(index):
  image, _, labels, owner = shapes_render.render([5, 1, index], image_size=96, return_owner=True)
  mask = shapes_render.semantic_mask(owner, labels)
  assert mask.shape == (96, 96) and mask.dtype == np.uint8
  for y in range(0, 96, 3):  # loop oracle on a pixel lattice
    for x in range(0, 96, 3):
      k = owner[y, x]
      assert mask[y, x] == (0 if k < 0 else labels[k] + 1)


def test_tfds_masks_read_back_equal_the_renderer(tiny_data_dir):
  import tensorflow_datasets as tfds
  from jaxdet.data import shapes
  b = tfds.builder("shapes/tiny", data_dir=tiny_data_dir)
  assert str(b.info.version) == "2.0.0" and "segmentation/mask" in b.info.features
  source = tfds.data_source("shapes/tiny", split="validation", data_dir=tiny_data_dir)
  for i in range(3):
    rec = source[i]
    *_, mask = shapes.render_split_image(int(rec["image/id"]) % 10_000_000, split="validation",
                                         config="tiny", with_mask=True)
    np.testing.assert_array_equal(np.asarray(rec["segmentation/mask"])[..., 0], mask)
