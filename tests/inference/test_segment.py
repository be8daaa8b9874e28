"""`jaxdet.inference.segment`: the logits' resize to a photo's size (two taps per axis, equal to
the dense interpolation matrices and to torch's `F.interpolate`), the masks' argmax without the
`[H, W, K]` map, and `Segmenter.predict` on photos that are not S x S."""

import tracemalloc

import jax
import numpy as np
import pytest

from jaxdet.inference import segment
from jaxdet.models import layers

# (h, w) of the logits -> (H, W) of the photo: odd sizes, up- and downscaling, one axis each way,
# a single pixel either side.
SIZES = [((7, 5), (23, 31)), ((23, 31), (7, 5)), ((9, 13), (9, 40)), ((40, 9), (17, 30)),
         ((1, 1), (5, 3)), ((5, 3), (1, 1)), ((16, 16), (16, 16))]


def _einsum_resize(logits, size):
  """The resize before the two-tap rewrite: the dense `[H, h]` and `[W, w]` interpolation
  matrices in one unoptimized einsum (O(H W h w K): minutes on a 512 x 512 photo)."""
  my = layers._bilinear_matrix(logits.shape[0], size[0])  # pylint: disable=protected-access
  mx = layers._bilinear_matrix(logits.shape[1], size[1])  # pylint: disable=protected-access
  return np.einsum("oh,pw,hwc->opc", my, mx, logits.astype(np.float32))


def _noise(h, w, k=5, seed=0):
  """Logits whose argmax changes at almost every pixel (every output pixel is on a border)."""
  return np.random.default_rng(seed).standard_normal((h, w, k)).astype(np.float32)


def _regions(h, w, k=5, block=6, seed=0):
  """Logits of a segmentation-like map: constant over `block` x `block` regions (most output
  pixels inside one, a few next to a border)."""
  coarse = _noise(-(-h // block), -(-w // block), k, seed)
  return np.repeat(np.repeat(coarse, block, 0), block, 1)[:h, :w]


@pytest.mark.parametrize("size,out", [(7, 23), (23, 7), (1, 5), (5, 1), (9, 9), (341, 4000),
                                      (64, 6000), (512, 17)])
def test_taps_are_the_interpolation_matrix(size, out):
  i0, i1, w0, w1 = segment._taps(size, out)  # pylint: disable=protected-access
  assert w0.dtype == w1.dtype == np.float32
  assert np.all(np.diff(i0) >= 0) and np.all(i1 == np.minimum(i0 + 1, size - 1))
  dense = np.zeros((out, size), np.float32)
  np.add.at(dense, (np.arange(out), i0), w0)
  np.add.at(dense, (np.arange(out), i1), w1)
  np.testing.assert_array_equal(dense, layers._bilinear_matrix(size, out))  # pylint: disable=protected-access


@pytest.mark.parametrize("source,size", SIZES)
def test_resize_logits_equals_the_einsum_and_torch(source, size):
  logits = _noise(*source)
  got = segment.resize_logits(logits, size)
  assert got.dtype == np.float32 and got.shape == (*size, 5)
  np.testing.assert_allclose(got, _einsum_resize(logits, size), rtol=0, atol=2e-6)
  from tests import testing_torch
  torch, _ = testing_torch.torch_modules()
  ref = torch.nn.functional.interpolate(
      torch.from_numpy(logits.transpose(2, 0, 1)[None].copy()), size=size, mode="bilinear",
      align_corners=False)[0].numpy().transpose(1, 2, 0)
  # torch computes the source coordinates in float32 (jaxdet in float64, as the matrices): its
  # weights differ by ~1e-7 x the coordinate, a few 1e-6 on these logits.
  np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("source,size", SIZES + [((13, 11), (300, 200)), ((50, 70), (31, 47))])
@pytest.mark.parametrize("logits_fn", [_noise, _regions], ids=["noise", "regions"])
def test_resized_argmax_equals_the_argmax_of_the_resize(source, size, logits_fn):
  logits = logits_fn(*source)
  masks = segment.resized_argmax(logits, size)
  assert masks.dtype == np.int32 and masks.shape == size
  np.testing.assert_array_equal(masks, np.argmax(segment.resize_logits(logits, size), -1))
  np.testing.assert_array_equal(masks, np.argmax(_einsum_resize(logits, size), -1))


def test_resized_argmax_ties_take_the_first_class():
  """As `np.argmax`: a zero-initialized head (all logits equal) gives background everywhere, and
  two classes equal everywhere give the first of them."""
  assert not segment.resized_argmax(np.zeros((4, 6, 3), np.float32), (9, 13)).any()
  logits = _regions(8, 8, 4, block=3)
  logits[..., 2] = logits[..., 1] = logits.max(-1) + 1
  np.testing.assert_array_equal(segment.resized_argmax(logits, (19, 21)), 1)


def test_resized_argmax_memory_stays_bounded():
  """A large photo's masks without its `[H, W, K]` float map (here 240 MiB; the einsum made it,
  and a 6000 x 4000 photo's is 2 GB): the peak is the masks plus bounded row chunks."""
  logits = _noise(6, 8, 21)
  size = (1500, 2000)
  tracemalloc.start()
  try:
    masks = segment.resized_argmax(logits, size)
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  full_map = size[0] * size[1] * 21 * 4
  assert masks.shape == size and peak < full_map / 4, (peak, full_map)


def test_softmax_in_place_equals_jax():
  logits = _noise(37, 11, 7) * 10
  want = np.asarray(jax.nn.softmax(logits, -1))
  np.testing.assert_allclose(segment.softmax(logits), want, rtol=1e-6, atol=1e-7)
  again = logits.copy()
  assert segment.softmax(again, out=again) is again
  np.testing.assert_allclose(again, want, rtol=1e-6, atol=1e-7)


@pytest.fixture(scope="module")
def segmenter():
  from jaxdet.models import segmentation
  from jaxdet.models.segmentation import fcn
  from jaxdet.train import config as config_lib
  config = config_lib.base_config()
  config.image_size = 32
  config.model = segmentation.default_config("fcn")
  config.model.update(fcn.test_config())
  return segment.build_segmenter(config, None, ("background", "a", "b", "c"))


def test_predict_resizes_the_logits_of_the_photo_area(segmenter):
  """A photo that is not S x S (letterbox: its area is the input's top-left 32 x 21): masks and
  probabilities are those of the einsum resize of that area's logits."""
  from jaxdet import predict_inputs
  photo = np.random.default_rng(0).integers(0, 256, (45, 68, 3), dtype=np.uint8)
  out = segmenter.predict(photo, probabilities=True)
  inputs, _, _ = predict_inputs.resize_batch([photo], 32, "letterbox")
  area = np.asarray(segmenter._logits_jit(segmenter.variables, inputs))[0, :21, :32]  # pylint: disable=protected-access
  want = _einsum_resize(area, (45, 68))
  assert out["masks"].shape == (1, 45, 68) and out["masks"].dtype == np.int32
  np.testing.assert_array_equal(out["masks"][0], np.argmax(want, -1))
  np.testing.assert_allclose(out["probabilities"][0], np.asarray(jax.nn.softmax(want, -1)),
                             atol=1e-6)
