"""Box IoU of the COCO matcher: bit-identical to pycocotools' maskUtils.iou (hypothesis)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxdet.eval.coco_match import ignored_by_area, pairwise_iou_xywh

mask_utils = pytest.importorskip("pycocotools.mask")

coord = st.one_of(st.integers(-5, 60).map(float), st.floats(-5, 60, allow_nan=False, width=32))
size = st.one_of(st.integers(0, 40).map(float), st.floats(0, 40, allow_nan=False, width=32),
                 st.floats(1e-4, 1e-2))
box = st.tuples(coord, coord, size, size).map(list)


@settings(max_examples=60, deadline=None)
@given(dets=st.lists(box, min_size=1, max_size=6), gts=st.lists(box, min_size=1, max_size=6),
       crowd_bits=st.integers(0, 63))
def test_iou_bit_identical_to_pycocotools(dets, gts, crowd_bits):
  crowd = np.array([(crowd_bits >> i) & 1 for i in range(len(gts))], bool)
  expected = np.asarray(mask_utils.iou(dets, gts, crowd.astype(np.uint8).tolist()))
  d = np.repeat(np.asarray(dets, np.float64), len(gts), axis=0)
  g = np.tile(np.asarray(gts, np.float64), (len(dets), 1))
  got = pairwise_iou_xywh(d, g, np.tile(crowd, len(dets))).reshape(len(dets), len(gts))
  np.testing.assert_array_equal(got, expected)


def test_area_ranges_are_closed():
  area = np.array([0.0, 1024.0, 1024.5, 9216.0, 1e10, 1e10 + 1])
  out = ignored_by_area(area, ((0, 1e10), (0, 1024), (1024, 9216)))
  np.testing.assert_array_equal(out, [[0, 0, 0, 0, 0, 1], [0, 0, 1, 1, 1, 1],
                                      [1, 0, 0, 0, 1, 1]])
