"""Gathering per-process evaluation results, so that metrics cover the whole split."""

import numpy as np


def gather_detections(dets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Concatenates every process's flat detections, in process order, on every process.

  Each process evaluates a contiguous shard of the split (`input_pipeline(train=False)` shards
  by process index, in order), so the result lists the detections in the order of a
  single-process evaluation, and COCO/VOC metrics (ties included) are identical. Padding
  examples are already dropped per process (`example_mask`), so none is counted twice.

  Args:
    dets: dict of flat arrays with the same keys, dtypes and trailing shapes on every process,
      leading size `D_p` per process (e.g. `image_id` int64 [D], `boxes_xyxy` float32 [D,4]).

  Returns:
    The same keys with leading size `sum_p D_p`. Unchanged in a single-process run.
  """
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_count() < 2:
    return dets
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  keys = sorted(dets)
  # Exchanged as raw bytes: collectives would narrow int64 ids without jax_enable_x64.
  row_bytes = [dets[k].dtype.itemsize * int(np.prod(dets[k].shape[1:])) for k in keys]
  raw = [np.ascontiguousarray(dets[k]).reshape(-1).view(np.uint8).reshape(len(dets[k]), w)
         for k, w in zip(keys, row_bytes)]
  local = np.concatenate(raw, axis=1)
  counts = np.asarray(multihost_utils.process_allgather(np.int64(len(local)))).reshape(-1)
  padded = np.zeros((int(counts.max()), local.shape[1]), np.uint8)
  padded[:len(local)] = local
  every = np.asarray(multihost_utils.process_allgather(padded))  # [P, max D, bytes]
  rows = np.concatenate([every[p, :int(c)] for p, c in enumerate(counts)])
  out, offset = {}, 0
  for k, width in zip(keys, row_bytes):
    a = dets[k]
    part = np.ascontiguousarray(rows[:, offset:offset + width])
    out[k] = part.view(a.dtype).reshape((len(rows),) + a.shape[1:])
    offset += width
  return out
