"""FCN: registry, the paper's crop offsets, bilinear upsampling, shapes of every variant, loss."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet.models import segmentation
from jaxdet.models.segmentation import fcn
from tests.models import models_testlib


def test_registry():
  assert "fcn" in segmentation.names() and segmentation.get("fcn") is fcn
  assert segmentation.is_segmentation(fcn.default_config())
  assert "preprocess" in segmentation.default_config("fcn")
  with pytest.raises(ValueError, match="unknown segmentation model 'nope'"):
    segmentation.get("nope")

  class Broken:
    name = "broken"
    default_config = test_config = staticmethod(lambda: None)
    build = staticmethod(lambda config, *, num_classes: None)
  with pytest.raises(TypeError, match="segmentation family 'broken'.*lacks `loss_fn`"):
    segmentation.register(Broken)


def test_caffe_crop_offsets_follow_from_the_grids():
  # voc-fcn{32,16,8}s: score_pool4c offset 5, score_pool3c 9, final crops 19 / 27 / 31.
  grid = fcn._Grid(1.0, 0.0).conv(3, 100)
  pools = {}
  for s in (2, 4, 8, 16, 32):
    grid = grid.pool2()
    pools[s] = grid
  fr = pools[32].conv(7, 0)
  assert -fr.up(64, 32).offset == 19
  up2 = fr.up(4, 2)
  assert (up2.offset - pools[16].offset) / 16 == 5 and -up2.up(32, 16).offset == 27
  up4 = up2.up(4, 2)
  assert (up4.offset - pools[8].offset) / 8 == 9 and -up4.up(16, 8).offset == 31


def test_upsample_is_bilinear_inside():
  ramp = jnp.arange(5, dtype=jnp.float32)[None, :, None, None] * jnp.ones((1, 1, 4, 2))
  up = fcn.Upsample(4)
  out = up.apply(up.init(jax.random.key(0), ramp), ramp)
  chex.assert_shape(out, (1, (5 - 1) * 4 + 8, (4 - 1) * 4 + 8, 2))
  # Output row j sits at input coordinate (j - 3.5) / 4: linear in between the input rows.
  rows = np.asarray(out[0, 8:20, 10, 0])
  np.testing.assert_allclose(rows, (np.arange(8, 20) - 3.5) / 4, atol=1e-5)


@pytest.mark.parametrize("variant", fcn.VARIANTS)
@pytest.mark.parametrize("paper_padding", [False, True])
def test_vgg_variants_keep_the_input_size(variant, paper_padding):
  config = fcn.vgg_test_config()
  config.update(variant=variant, paper_padding=paper_padding)
  module = segmentation.build(config, num_classes=3)
  x = jax.ShapeDtypeStruct((2, 70, 45, 3), jnp.float32)
  out, _ = jax.eval_shape(lambda a: module.init_with_output(jax.random.key(0), a, train=False), x)
  assert set(out) == {"out"}
  chex.assert_shape(out["out"], (2, 70, 45, 3))


def test_loss_ignores_255_and_matches_a_reference():
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((2, 5, 6, 4)).astype(np.float32)
  mask = rng.integers(0, 4, (2, 5, 6)).astype(np.int32)
  mask[0, :2] = 255
  keep = mask != 255
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  ref = -np.take_along_axis(logp, np.where(keep, mask, 0)[..., None], -1)[..., 0][keep].mean()
  config = fcn.default_config()
  loss, metrics = fcn.loss_fn({"out": logits, "aux": logits}, {"mask": mask}, config=config)
  np.testing.assert_allclose(metrics["ce_out"], ref, rtol=1e-5)
  np.testing.assert_allclose(loss, 1.5 * ref, rtol=1e-5)
  loss, _ = fcn.loss_fn({"out": logits}, {"mask": np.full_like(mask, 255)}, config=config)
  assert float(loss) == 0.0


def test_loss_falls_on_a_fixed_batch():
  config = fcn.vgg_test_config()
  config.fc_dropout = 0.0
  module = segmentation.build(config, num_classes=3)
  rng = np.random.default_rng(0)
  mask = rng.integers(1, 3, (2, 4, 4)).repeat(8, 1).repeat(8, 2)  # 8x8 blocks of class 1 or 2
  images = jnp.asarray((mask == 1)[..., None] - 0.5 + 0.3 * rng.standard_normal((2, 32, 32, 3)),
                       jnp.float32)
  mask[:, :4] = 255
  variables = models_testlib.numpy_variables(module, images, train=False)
  history = models_testlib.sgd_loss_history(module, fcn.loss_fn, config, variables, images,
                                            {"mask": mask}, learning_rate=0.2, steps=12)
  assert np.isfinite(history).all() and history[-1] < 0.8 * history[0], history
