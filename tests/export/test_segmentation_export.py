"""Segmentation export: the ONNX graph's masks equal `Segmenter.predict` at batch 1 and 4;
`jaxdet export` / `jaxdet predict` on a segmentation workdir."""

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("jax2onnx")

from jaxdet.convert.checkpoint import write_checkpoint  # noqa: E402
from jaxdet.inference.segment import build_segmenter  # noqa: E402
from jaxdet.models import segmentation  # noqa: E402
from jaxdet.models.segmentation import fcn  # noqa: E402
from jaxdet.train import config as config_lib  # noqa: E402
from tests.models import models_testlib  # noqa: E402

SIZE = 64
NAMES = ("background", "circle", "square")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A segmentation checkpoint folder: the tiny FCN-ResNet (dilation, aux head, bilinear) with
  seeded weights."""
  config = config_lib.base_config()
  config.image_size = SIZE
  config.model = segmentation.default_config("fcn")
  config.model.update(fcn.test_config())
  module = segmentation.build(config.model, num_classes=len(NAMES))
  variables = models_testlib.numpy_variables(module, np.zeros((1, SIZE, SIZE, 3), np.float32),
                                             train=False)
  path = tmp_path_factory.mktemp("seg") / "run"
  write_checkpoint(path, config, variables, class_names=NAMES, source={"test": True})
  return path


@pytest.fixture(scope="module")
def onnx_path(workdir):
  """The workdir exported by `jaxdet export --probabilities` (one export for the module)."""
  from jaxdet import cli
  path = workdir.parent / "seg.onnx"
  assert cli.main(["export", "--workdir", str(workdir), "--output", str(path),
                   "--probabilities"]) == 0
  return path


def _images(n, size=SIZE, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_onnx_masks_equal_predict_at_batch_1_and_4(workdir, onnx_path):
  import jaxdet
  from jaxdet_export import segmentation as seg_export
  segmenter = jaxdet.load(workdir)
  served = seg_export.Segmenter(onnx_path)
  assert served.class_names == NAMES and served.image_size == SIZE
  assert served.metadata.probabilities and served.metadata.checkpoint_kind == "latest"
  for n in (1, 4):
    images = _images(n, seed=n)
    ours = segmenter.predict(images, probabilities=True)
    theirs = served.predict(images)
    assert theirs["masks"].dtype == np.int32 and theirs["masks"].shape == (n, SIZE, SIZE)
    np.testing.assert_array_equal(theirs["masks"], ours["masks"])
    np.testing.assert_allclose(theirs["probabilities"], ours["probabilities"], atol=1e-3)
    assert len(np.unique(ours["masks"])) > 1  # the seeded model is not constant
  # Other sizes (4 images: predict's compiled batch above): masks at each input's resolution.
  sizes = (50, 90, SIZE, 30)
  odd = segmenter.predict([_images(1, n)[0] for n in sizes], probabilities=True)
  assert [m.shape for m in odd["masks"]] == [(n, n) for n in sizes]
  np.testing.assert_allclose(odd["probabilities"][1].sum(-1), 1.0, atol=1e-5)
  assert served.predict(_images(2, 90))["masks"].shape == (2, 90, 90)


def test_cli_predict_writes_overlays(workdir, onnx_path, tmp_path):
  from PIL import Image
  from jaxdet import cli
  image_dir = tmp_path / "images"
  image_dir.mkdir()
  for i, image in enumerate(_images(2, 48)):
    Image.fromarray(image).save(image_dir / f"p{i}.png")
  for model in (str(onnx_path), str(workdir)):
    out = tmp_path / ("onnx" if model.endswith(".onnx") else "jax")
    assert cli.main(["predict", "--model", model, str(image_dir), "--out", str(out)]) == 0
    records = json.loads((out / "segmentation.json").read_text())
    assert [r["image"] for r in records] == ["p0.png", "p1.png"]
    assert set(records[0]["pixels_per_class"]) <= set(NAMES)
    for r in records:
      assert np.asarray(Image.open(out / r["drawing"])).shape == (48, 48, 3)
      mask = np.asarray(Image.open(out / r["mask"]))
      assert mask.shape == (48, 48) and mask.max() < len(NAMES)
    assert (out / "predictions.png").exists()
  assert cli.main(["export", "--workdir", str(workdir), "--output", str(tmp_path / "x.onnx"),
                   "--fp16"]) != 0  # detection-only option: one error line


def test_vgg_fcn8s_exports_with_transposed_convs(tmp_path):
  """The paper's FCN-8s path (pad 100, crops, bilinear transposed convs -> ONNX ConvTranspose)."""
  from jaxdet_export import segmentation as seg_export
  config = config_lib.base_config()
  config.image_size = SIZE
  config.model = segmentation.default_config("fcn")
  config.model.update(fcn.vgg_test_config(), paper_padding=True)
  module = segmentation.build(config.model, num_classes=len(NAMES))
  variables = models_testlib.numpy_variables(module, np.zeros((1, SIZE, SIZE, 3), np.float32),
                                             train=False)
  segmenter = build_segmenter(config, variables, NAMES)
  model = seg_export.export_segmentation_onnx(segmenter, tmp_path / "vgg.onnx")
  assert "ConvTranspose" in {n.op_type for n in model.graph.node}
  images = _images(2, seed=7)
  np.testing.assert_array_equal(seg_export.Segmenter(tmp_path / "vgg.onnx").predict(images)["masks"],
                                segmenter.predict(images)["masks"])
