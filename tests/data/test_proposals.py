"""External proposals (`jaxdet.data.proposals`) joined into `input_pipeline` batches by image id."""

import chex
import numpy as np
import pytest

from jaxdet import testing
from jaxdet.data import pipeline
from jaxdet.data import proposals


def _first(it):
  return next(iter(it))


def _pipeline(data_dir, split, path, **kw):
  args = dict(batch_size=4, image_size=64, max_boxes=16, seed=0, data_dir=data_dir,
              shard_index=0, shard_count=1, proposals_file=path, max_proposals=12)
  return pipeline.input_pipeline("shapes/tiny", split, **dict(args, **kw))


def test_write_and_load_round_trip(tmp_path):
  path = tmp_path / "p.npz"
  boxes = [np.arange(8, dtype=np.float32).reshape(2, 4), np.zeros((0, 4)), np.ones((1, 4))]
  proposals.write_proposals(path, [7, 3, 9], boxes)
  table = proposals.load_proposals(path)
  assert sorted(table) == [3, 7, 9]
  np.testing.assert_array_equal(table[7], boxes[0])
  chex.assert_shape([table[3], table[9]], [(0, 4), (1, 4)])
  assert proposals.split_path(str(tmp_path / "p_{split}.npz"), "train").endswith("p_train.npz")
  with pytest.raises(ValueError, match="image id 5 has no proposals in x.npz"):
    proposals.lookup(table, 5, 10, path="x.npz")


def test_eval_proposals_map_through_the_letterbox_like_boxes(tiny_data_dir, tmp_path):
  """Proposals = ground truth: after the eval resize they equal the batch's boxes, in order."""
  path = str(tmp_path / "{split}.npz")
  table = testing.write_split_proposals(path.format(split="validation"), "shapes/tiny",
                                        "validation", tiny_data_dir)
  b = _first(_pipeline(tiny_data_dir, "validation", path, train=False))
  chex.assert_shape([b["proposals"], b["proposal_mask"]], [(4, 12, 4), (4, 12)])
  assert b["proposals"].dtype == np.float32 and b["proposal_mask"].dtype == bool
  for i in range(4):
    n = min(len(table[int(b["image_id"][i])]), 12)
    assert b["proposal_mask"][i].sum() == n
    np.testing.assert_allclose(b["proposals"][i, :n], b["boxes"][i, :n], rtol=1e-6)
    np.testing.assert_allclose(b["proposals"][i, :n] / np.tile(b["scale"][i], 2),
                               table[int(b["image_id"][i])][:n], rtol=1e-5)


def test_train_proposals_follow_flip_and_scale_jitter(tiny_data_dir, tmp_path):
  """With the default augmentation (scale jitter, crop/pad, flip) every kept box is the
  proposal it came from: proposals move exactly as boxes and are never dropped."""
  path = str(tmp_path / "train.npz")
  testing.write_split_proposals(path, "shapes/tiny", "train", tiny_data_dir)
  b = _first(_pipeline(tiny_data_dir, "train", path, train=True, augment="default",
                       max_proposals=64))  # all of them
  for i in range(4):
    props = b["proposals"][i][b["proposal_mask"][i]]
    for box in b["boxes"][i][b["box_mask"][i]]:
      assert np.abs(props - box).max(1).min() < 1e-3, (i, box)
    assert np.all(props >= 0) and np.all(props <= 64)


def test_missing_image_id_and_unsafe_augmentation_are_clear_errors(tiny_data_dir, tmp_path):
  path = str(tmp_path / "validation.npz")
  table = testing.write_split_proposals(path, "shapes/tiny", "validation", tiny_data_dir)
  first = min(table)
  testing.write_split_proposals(path, "shapes/tiny", "validation", tiny_data_dir,
                                skip_ids=(first,))
  with pytest.raises(ValueError, match=f"image id {first} has no proposals in .*validation.npz"):
    list(_pipeline(tiny_data_dir, "validation", path, train=False))
  with pytest.raises(ValueError, match=r"augment ops \['mosaic=1.0'\] cannot move"):
    _pipeline(tiny_data_dir, "validation", path, train=True, augment="mosaic")
