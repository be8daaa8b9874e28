import numpy as np

from jaxdet.data import ground_truth


def test_dataset_info(tiny_data_dir):
  info = ground_truth.dataset_info("shapes/tiny", tiny_data_dir)
  assert info.class_names == ("circle", "square", "triangle", "star", "hexagon", "cross")
  assert info.num_examples == {"train": 32, "validation": 8, "test": 8}


def test_coco_ground_truth_matches_records(tiny_data_dir):
  import tensorflow_datasets as tfds
  gt = ground_truth.coco_ground_truth("shapes/tiny", "validation", tiny_data_dir)
  src = tfds.data_source("shapes/tiny", split="validation", data_dir=tiny_data_dir)
  assert [c["name"] for c in gt["categories"]][:2] == ["circle", "square"]
  assert len(gt["images"]) == len(src)
  anns = {}
  for a in gt["annotations"]:
    anns.setdefault(a["image_id"], []).append(a)
  ids = set()
  for i in range(len(src)):
    rec = src[i]
    image_id = int(rec["image/id"])
    ids.add(image_id)
    h, w = rec["image"].shape[:2]
    bbox = np.asarray(rec["objects"]["bbox"], np.float64).reshape(-1, 4)
    got = anns.get(image_id, [])
    assert len(got) == len(bbox)
    for a, (ymin, xmin, ymax, xmax), label in zip(got, bbox, rec["objects"]["label"]):
      np.testing.assert_allclose(a["bbox"], [xmin * w, ymin * h, (xmax - xmin) * w,
                                             (ymax - ymin) * h], atol=1e-4)
      assert a["category_id"] == int(label) and a["iscrowd"] == 0 and a["ignore"] == 0
      np.testing.assert_allclose(a["area"], a["bbox"][2] * a["bbox"][3], rtol=1e-6)
  assert {im["id"] for im in gt["images"]} == ids
  assert len({a["id"] for a in gt["annotations"]}) == len(gt["annotations"])
  import json
  json.dumps(gt)  # plain Python types only


def test_mask_examples_at_original_size(tiny_data_dir):
  from jaxdet.data import shapes
  examples = list(ground_truth.mask_examples("shapes/tiny", "validation", tiny_data_dir, limit=2))
  assert len(examples) == 2
  for ex in examples:
    *_, mask = shapes.render_split_image(int(ex["image_id"]) % 10_000_000, split="validation",
                                         config="tiny", with_mask=True)
    np.testing.assert_array_equal(ex["mask"], mask)
    assert ex["image"].shape == (256, 256, 3)


def test_has_boxes_reads_up_to_the_first_box(tiny_data_dir, boxless_data_dir):
  assert ground_truth.has_boxes("shapes/tiny", "train", tiny_data_dir)
  assert ground_truth.has_boxes("boxless_val", "train", boxless_data_dir)  # 2nd image has one
  assert not ground_truth.has_boxes("boxless_val", "validation", boxless_data_dir)
  assert not ground_truth.has_boxes("boxless", "train", boxless_data_dir)
  assert not ground_truth.coco_ground_truth("boxless", "train", boxless_data_dir)["annotations"]
