"""The in-graph letterbox (dynamic image size) against `jaxdet.data.preprocess.letterbox_image`."""

import numpy as np
import onnxruntime as ort
import pytest

from jaxdet_export import preprocess_graph
from export_testlib import shapes_images
from jaxdet.data.preprocess import letterbox_image

SIZE = 64


@pytest.fixture(scope="module")
def session():
  model = preprocess_graph.letterbox_model(image_size=SIZE, opset=21)
  return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("hw", [(64, 64), (50, 90), (90, 50), (200, 130), (31, 33), (3, 300),
                                (300, 1), (100, 100), (127, 64)])
def test_geometry_matches_and_pixels_agree(session, hw):
  h, w = hw
  images = shapes_images(2, h, w, seed=h * 1000 + w)
  boxed, box_scale, box_limit = session.run(None, {"images": images})
  want = [letterbox_image(im, SIZE) for im in images]
  assert boxed.shape == (2, SIZE, SIZE, 3) and boxed.dtype == np.uint8
  # Same scale (float64 math, stored float32) and the same padded region.
  sx, sy = want[0][1]
  np.testing.assert_array_equal(box_scale, np.float32([sx, sy, sx, sy]))
  np.testing.assert_array_equal(box_limit, np.float32([w, h, w, h]))
  for got, (ref, _) in zip(boxed, want):
    content = np.any(ref > 0, axis=-1) | np.any(got > 0, axis=-1)
    rows, cols = np.nonzero(content)
    new_h, new_w = round(h * SIZE / max(h, w)), round(w * SIZE / max(h, w))
    assert rows.max() < max(1, new_h) and cols.max() < max(1, new_w)
    diff = np.abs(got.astype(int) - ref.astype(int))
    if (h, w) == (SIZE, SIZE):
      assert diff.max() == 0  # no resize: bit exact
    else:
      # ONNX Resize (linear, antialias) vs PIL bilinear: equal up to rounding on smooth images.
      assert diff.mean() < 0.5, diff.mean()
      assert np.mean(diff > 2) < 0.02


def test_needs_opset_18():
  with pytest.raises(ValueError, match="opset"):
    preprocess_graph.letterbox_model(image_size=SIZE, opset=17)


@pytest.fixture(scope="module")
def stretch_session():
  model = preprocess_graph.resize_model(image_size=SIZE, opset=21, resize="stretch")
  return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("hw", [(64, 64), (50, 90), (200, 130), (3, 300)])
def test_stretch_matches_stretch_image(stretch_session, hw):
  from jaxdet.data.preprocess import stretch_image
  h, w = hw
  images = shapes_images(2, h, w, seed=h * 1000 + w + 7)
  boxed, box_scale, box_limit = stretch_session.run(None, {"images": images})
  assert boxed.shape == (2, SIZE, SIZE, 3) and boxed.dtype == np.uint8
  np.testing.assert_array_equal(box_scale, np.float32([SIZE / w, SIZE / h] * 2))
  np.testing.assert_array_equal(box_limit, np.float32([w, h, w, h]))
  for got, image in zip(boxed, images):
    ref, (sx, sy) = stretch_image(image, SIZE)
    assert (sx, sy) == (SIZE / w, SIZE / h)
    diff = np.abs(got.astype(int) - ref.astype(int))
    if (h, w) == (SIZE, SIZE):
      assert diff.max() == 0
    else:  # ONNX Resize (linear, antialias) vs PIL bilinear, as for the letterbox
      assert diff.mean() < 0.5, diff.mean()
      assert np.mean(diff > 2) < 0.02


def test_unknown_resize_rule():
  with pytest.raises(ValueError, match="resize"):
    preprocess_graph.resize_model(image_size=SIZE, opset=21, resize="crop")


@pytest.mark.parametrize("resize", ["letterbox", "stretch"])
def test_proposals_follow_the_images_like_predict(resize):
  """A Fast R-CNN export's ``proposals`` go into network pixels as `Detector.predict` maps them."""
  from jaxdet import predict_inputs
  model = preprocess_graph.resize_model(image_size=SIZE, opset=21, resize=resize,
                                        num_proposals=3)
  session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
  images = shapes_images(2, 50, 90, seed=3)
  proposals = np.random.default_rng(0).uniform(0, 50, (2, 3, 4)).astype(np.float32)
  outs = dict(zip([o.name for o in session.get_outputs()],
                  session.run(None, {"images": images, "proposals": proposals})))
  _, scale, _ = predict_inputs.resize_batch(list(images), SIZE, resize)
  want, _ = predict_inputs.proposals_to_inputs(proposals, None, scale, num_images=2)
  np.testing.assert_array_equal(outs["letterboxed_proposals"], want)
