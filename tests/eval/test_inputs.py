"""`jaxdet.eval.inputs`: reading detections (messages for inputs of the wrong kind)."""

import pytest

from jaxdet.eval.inputs import load_detections, load_ground_truth


def test_predict_detections_json_is_recognised():
  """`jaxdet predict`'s detections.json passed to `evaluate --detections` said only
  "detection #0 has no 'category_id' field"."""
  gt = load_ground_truth({"images": [{"id": 1, "width": 20, "height": 20}],
                          "categories": [{"id": 0, "name": "a"}], "annotations": []})
  records = [{"image": "x.jpg", "path": "/d/x.jpg", "image_id": 1, "height": 20, "width": 20,
              "detections": [{"box_xyxy": [1, 2, 5, 6], "score": 0.5, "class_id": 0,
                              "class_name": "a"}]}]
  with pytest.raises(ValueError, match=r"detections\.json.*--format coco.*coco_results\.json"):
    load_detections(records, gt)
