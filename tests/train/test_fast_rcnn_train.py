"""`train_and_evaluate` of a Fast R-CNN (`faster_rcnn`, proposals="external") on a proposals file:
jittered ground truth + random boxes on `shapes/tiny`, a tiny model, a few steps, validation AP."""

import numpy as np
import pytest

from jaxdet import cli
from jaxdet import models
from jaxdet import testing
from jaxdet.data import proposals
from jaxdet.models.detectors import faster_rcnn
from jaxdet.train import config as config_lib
from jaxdet.train import evaluate as eval_lib
from jaxdet.train import logging as log_lib
from jaxdet.train import loop


def _config(data_dir, proposals_file):
  c = config_lib.base_config()
  c.update(dataset="shapes/tiny", data_dir=data_dir, image_size=64, max_boxes=16, batch_size=4,
           eval_batch_size=8, total_steps=2, eval_every=2, log_every=1, tensorboard=False,
           augment="default", proposals_file=proposals_file, max_proposals=24)
  c.optimizer.warmup_steps = 1
  c.model = models.default_config("faster_rcnn")
  c.model.update(faster_rcnn.test_config())
  c.model.update(proposals="external", roi_pooler="pool")
  return c


@pytest.mark.slow  # ~25 s on a busy 2-core CPU: init, train step and predict compiles
def test_fast_rcnn_trains_and_evaluates_on_a_proposals_file(tiny_data_dir, tmp_path):
  rng = np.random.default_rng(0)
  path = str(tmp_path / "props_{split}.npz")
  for split in ("train", "validation"):
    testing.write_split_proposals(path.format(split=split), "shapes/tiny", split, tiny_data_dir,
                                  rng=rng, jitter=0.1, num_random=8)
  config = _config(tiny_data_dir, path)
  workdir = tmp_path / "run"
  loop.train_and_evaluate(config, workdir, progress=False)
  records = log_lib.read_metrics(workdir)
  train = [r for r in records if r["split"] == "train"]
  assert [r["step"] for r in train] == [1, 2] and all(np.isfinite(r["loss"]) for r in train)
  (evaluation,) = [r for r in records if r["split"] == "eval"]
  assert 0.0 <= evaluation["AP"] <= 1.0

  # `jaxdet data proposals`: this detector's detections as the next proposals file.
  out = tmp_path / "next.npz"
  assert cli.main(["data", "proposals", "--workdir", str(workdir), "--split", "validation",
                   "--output", str(out), "--top", "5"]) == 0
  table = proposals.load_proposals(out)
  assert sorted(table) == sorted(proposals.load_proposals(path.format(split="validation")))
  assert all(len(b) <= 5 for b in table.values()) and sum(map(len, table.values())) > 0


def test_proposals_file_and_model_must_agree():
  c = _config("", "")
  with pytest.raises(ValueError, match="needs --config.proposals_file"):
    eval_lib.proposal_args(c)
  c.model.proposals, c.proposals_file = "rpn", "p.npz"
  with pytest.raises(ValueError, match="only read by a model with model.proposals='external'"):
    eval_lib.proposal_args(c)
