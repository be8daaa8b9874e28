"""Cross-entropy losses vs NumPy (and torch when installed)."""

import numpy as np
import pytest

from jaxdet import losses


def test_bce_matches_numpy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(5, 4)) * 3
  t = rng.uniform(size=(5, 4))
  p = 1 / (1 + np.exp(-x))
  want = -(t * np.log(p) + (1 - t) * np.log(1 - p))
  got = losses.sigmoid_binary_cross_entropy(x.astype(np.float32), t.astype(np.float32))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_softmax_ce_label_smoothing_matches_numpy(eps):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(6, 5)) * 2
  y = rng.integers(0, 5, size=6)
  logp = x - np.log(np.exp(x).sum(-1, keepdims=True))
  target = (1 - eps) * np.eye(5)[y] + eps / 5
  want = -(target * logp).sum(-1)
  got = losses.softmax_cross_entropy(x.astype(np.float32), y, label_smoothing=eps)
  assert got.shape == (6,)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_softmax_ce_matches_torch():
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(2)
  x = rng.normal(size=(8, 7)).astype(np.float32)
  y = rng.integers(0, 7, size=8)
  want = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(y), reduction="none",
                                           label_smoothing=0.2).numpy()
  np.testing.assert_allclose(losses.softmax_cross_entropy(x, y, label_smoothing=0.2), want,
                             rtol=1e-5, atol=1e-6)
