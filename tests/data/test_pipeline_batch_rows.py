"""`input_pipeline(batch_rows=...)`: processes reading their rows of each global batch together
read exactly the single-process batches (multi-process training)."""

import numpy as np
import pytest

from jaxdet import data


def _batches(data_dir, count, **kwargs):
  it = iter(data.input_pipeline("shapes/tiny", "train", image_size=32, max_boxes=4, train=True,
                                seed=3, data_dir=data_dir, augment="default", shard_index=0,
                                shard_count=1, num_threads=1, **kwargs))
  return [next(it) for _ in range(count)]


@pytest.mark.parametrize("start_step", [0, 5])
def test_rows_of_global_batches_reassemble_the_global_batches(tiny_data_dir, start_step):
  whole = _batches(tiny_data_dir, 3, batch_size=6, start_step=start_step)
  parts = [_batches(tiny_data_dir, 3, batch_size=6, start_step=start_step, batch_rows=rows)
           for rows in ((0, 2), (2, 6))]
  for step, batch in enumerate(whole):
    assert parts[0][step]["image"].shape[0] == 2 and parts[1][step]["image"].shape[0] == 4
    for k, v in batch.items():
      np.testing.assert_array_equal(
          np.concatenate([parts[0][step][k], parts[1][step][k]]), v, err_msg=k)


@pytest.mark.parametrize("rows", [(0, 0), (2, 7), (-1, 2)])
def test_bad_batch_rows(tiny_data_dir, rows):
  with pytest.raises(ValueError, match="batch_rows"):
    _batches(tiny_data_dir, 1, batch_size=6, batch_rows=rows)
