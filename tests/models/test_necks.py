"""FPN / PAN output shapes, and FPN against torchvision's FeaturePyramidNetwork + LastLevelP6P7."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdet.models.fpn import FPN
from jaxdet.models.pan import PAN


def _feats(rng, size=64, chans=(8, 16, 32)):
  return {f"c{l}": jnp.asarray(rng.normal(size=(2, size // 2**l, size // 2**l, c)), jnp.float32)
          for l, c in zip((3, 4, 5), chans)}


@pytest.mark.parametrize("extra,p6_from", [(True, "p5"), (True, "c5"), (False, "p5")])
def test_fpn_shapes(extra, p6_from):
  feats = _feats(np.random.default_rng(0), size=128)
  out, _ = jax.eval_shape(lambda: FPN(16, extra, p6_from).init_with_output(
      jax.random.key(0), feats, train=False))
  levels = (3, 4, 5, 6, 7) if extra else (3, 4, 5)
  assert sorted(out) == [f"p{l}" for l in levels]
  for l in levels:
    chex.assert_shape(out[f"p{l}"], (2, 128 // 2**l, 128 // 2**l, 16))


def test_fpn_matches_torchvision():
  torch = pytest.importorskip("torch")
  tv_fpn = pytest.importorskip("torchvision.ops.feature_pyramid_network")
  rng = np.random.default_rng(0)
  feats = _feats(rng)
  fpn = FPN(16, True, "p5")
  variables = fpn.init(jax.random.key(0), feats, train=False)
  ref = tv_fpn.FeaturePyramidNetwork([8, 16, 32], 16, extra_blocks=tv_fpn.LastLevelP6P7(16, 16))
  p = variables["params"]
  conv = lambda name: (torch.tensor(np.asarray(p[name]["kernel"]).transpose(3, 2, 0, 1)),
                       torch.tensor(np.asarray(p[name]["bias"])))
  with torch.no_grad():
    for i, l in enumerate((3, 4, 5)):
      ref.inner_blocks[i][0].weight[:], ref.inner_blocks[i][0].bias[:] = conv(f"inner{l}")
      ref.layer_blocks[i][0].weight[:], ref.layer_blocks[i][0].bias[:] = conv(f"layer{l}")
    ref.extra_blocks.p6.weight[:], ref.extra_blocks.p6.bias[:] = conv("p6")
    ref.extra_blocks.p7.weight[:], ref.extra_blocks.p7.bias[:] = conv("p7")
    tin = {str(i): torch.tensor(np.asarray(feats[f"c{l}"]).transpose(0, 3, 1, 2))
           for i, l in enumerate((3, 4, 5))}
    want = list(ref(tin).values())
  got = fpn.apply(variables, feats, train=False)
  for l, w in zip((3, 4, 5, 6, 7), want):
    np.testing.assert_allclose(got[f"p{l}"], w.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)


def test_pan_shapes():
  feats = _feats(np.random.default_rng(0))
  out, variables = jax.eval_shape(lambda: PAN((8, 16, 32)).init_with_output(
      jax.random.key(0), feats, train=False))
  chex.assert_shape([out["p3"], out["p4"], out["p5"]], [(2, 8, 8, 8), (2, 4, 4, 16),
                                                        (2, 2, 2, 32)])
  assert "batch_stats" in variables
