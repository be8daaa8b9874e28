"""Maps TFDS's own `voc` and `coco` records onto jaxdet's features (DESIGN.md).

`coco` already uses ``image/id`` and ``objects/{bbox,label,is_crowd}``; `voc` has no image id
(derived from the file name's digits, e.g. ``2008_000008.jpg`` -> 2008000008) and no crowd flag.
Sanitizing (inverted / NaN boxes, mismatched lengths as in ``tfds.testing.mock_data``) happens
in ``sources.record_to_example``.
"""

import re

import numpy as np


def _id_from_filename(filename, fallback):
  if isinstance(filename, bytes):
    filename = filename.decode("utf-8", "replace")
  digits = re.sub(r"\D", "", str(filename or ""))
  return int(digits[-18:]) if digits else int(fallback)


def to_jaxdet_record(record, index):
  """Returns ``record`` with jaxdet's keys filled in (``image/id``, crowd/difficult flags).

  Args:
    record: a TFDS record of `voc`, `coco` or a jaxdet dataset.
    index: the record's index in its split (last-resort image id).

  Returns:
    dict with ``image``, ``image/id`` int64 and ``objects`` {``bbox``, ``label``, ``is_crowd``,
    ``is_difficult``}.
  """
  objects = dict(record.get("objects", {}))
  n = len(np.asarray(objects.get("label", [])).reshape(-1))
  objects.setdefault("is_crowd", np.zeros(n, bool))
  objects.setdefault("is_difficult", np.zeros(n, bool))
  out = dict(record, objects=objects)
  if "image/id" not in record:
    out["image/id"] = np.int64(_id_from_filename(record.get("image/filename"), index))
  return out
