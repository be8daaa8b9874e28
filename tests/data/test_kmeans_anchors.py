"""k-means anchors: recovers known clusters, deterministic, and `jaxdet data anchors` end to end."""

import ast

import chex
import numpy as np
import pytest

from jaxdet import cli
from jaxdet.data import anchors

TRUE_WH = np.array([[8, 10], [30, 15], [20, 60], [90, 80]], np.float32)  # distinct shapes/sizes


def _clustered_wh(seed, n_per=200, spread=0.05):
  rng = np.random.default_rng(seed)
  wh = np.repeat(TRUE_WH, n_per, axis=0)
  return (wh * np.exp(rng.normal(0, spread, wh.shape))).astype(np.float32)


def test_wh_iou_against_box_iou_of_corner_aligned_boxes():
  from jaxdet.ops import box_iou
  rng = np.random.default_rng(0)
  wh, anc = rng.uniform(1, 50, (7, 2)), rng.uniform(1, 50, (5, 2))
  as_boxes = lambda x: np.concatenate([np.zeros_like(x), x], 1).astype(np.float32)
  np.testing.assert_allclose(anchors.wh_iou(wh, anc),
                             np.asarray(box_iou(as_boxes(wh), as_boxes(anc))), rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_recovers_known_clusters(seed):
  wh = _clustered_wh(seed)
  found, mean_iou = anchors.kmeans_anchors(wh, k=4, seed=seed)
  chex.assert_shape(found, (4, 2))
  chex.assert_type(found, np.float32)
  # Sorted by area, each within a few percent of its cluster's centre.
  np.testing.assert_allclose(found, TRUE_WH, rtol=0.05)
  assert mean_iou > 0.85
  np.testing.assert_allclose(mean_iou, anchors.wh_iou(wh, found).max(1).mean(), rtol=1e-5)


def test_deterministic_given_seed_and_more_anchors_fit_better():
  wh = np.random.default_rng(3).lognormal(3, 0.7, (500, 2)).astype(np.float32)
  a1, s1 = anchors.kmeans_anchors(wh, k=5, seed=7)
  a2, s2 = anchors.kmeans_anchors(wh, k=5, seed=7)
  np.testing.assert_array_equal(a1, a2)
  assert s1 == s2
  assert np.all(np.diff(np.prod(a1, 1)) >= 0)
  fit = lambda k: anchors.kmeans_anchors(wh, k=k, seed=7)[1]
  assert fit(9) > s1 > fit(2)


def test_few_or_bad_boxes_are_errors():
  with pytest.raises(ValueError, match="3 boxes are too few for 4 anchors"):
    anchors.kmeans_anchors(TRUE_WH[:3], k=4)
  with pytest.raises(ValueError, match="positive"):
    anchors.kmeans_anchors(np.array([[1, 0], [2, 2]], np.float32), k=1)
  # k equal to the number of (identical) boxes still gives k anchors.
  found, mean_iou = anchors.kmeans_anchors(np.ones((3, 2), np.float32), k=3)
  chex.assert_shape(found, (3, 2))
  assert mean_iou == pytest.approx(1.0)


def test_input_box_wh_follows_the_resize_rule():
  gt = {"images": [{"id": 1, "width": 200, "height": 100}],
        "annotations": [{"image_id": 1, "bbox": [0, 0, 50, 20], "iscrowd": 0},
                        {"image_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 1}]}
  np.testing.assert_allclose(anchors.input_box_wh(gt, 400), [[100, 40]])
  np.testing.assert_allclose(anchors.input_box_wh(gt, 400, "stretch"), [[100, 80]])


def test_config_line_is_a_tuple_of_pairs():
  line = anchors.config_line(np.array([[10.04, 13.0], [16.25, 30.5]]))
  assert line == "--config.model.anchors='((10, 13), (16.2, 30.5))'"
  value = ast.literal_eval(anchors.config_line(np.array([[3.0, 4.0]])).split("=", 1)[1][1:-1])
  assert value == ((3, 4),)


def test_cli_on_shapes(tiny_data_dir, capsys):
  argv = ["data", "anchors", "shapes/tiny", "--num", "3", "--image-size", "64", "--data-dir",
          tiny_data_dir]
  assert cli.main(argv) == 0
  out = capsys.readouterr().out
  lines = out.strip().splitlines()
  assert lines[0].startswith("shapes/tiny:train: ") and "at 64 px (letterbox)" in lines[0]
  assert lines[-2].startswith("mean best IoU: ")
  assert 0 < float(lines[-2].split(": ")[1]) <= 1
  pairs = ast.literal_eval(lines[-1].split("=", 1)[1][1:-1])
  assert len(pairs) == 3 and all(0 < v <= 64 for p in pairs for v in p)
  assert cli.main(argv) == 0
  assert capsys.readouterr().out == out  # deterministic


def test_cli_too_few_boxes_is_one_line_and_no_output(tiny_data_dir, capsys):
  rc = cli.main(["data", "anchors", "shapes/tiny", "--split", "validation", "--num", "100000",
                 "--data-dir", tiny_data_dir])
  captured = capsys.readouterr()
  assert rc == 1 and captured.out == ""
  assert len(captured.err.strip().splitlines()) == 1
  assert "fewer than --num 100000 anchors" in captured.err
