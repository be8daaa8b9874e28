"""The embedded `shapes` dataset: a procedural TFDS builder (no download, deterministic by seed).

Configs: ``shapes`` (= ``shapes/default``, 8000/1000/1000 images), ``shapes/small`` (800/100/100)
and ``shapes/tiny`` (32/8/8, for tests). Any size: ``Shapes(config=ShapesConfig(...))``.
From version 2.0.0 every example has ``segmentation/mask`` (uint8, 0 = background, label + 1
where a shape is visible; a later shape drawn over an earlier one, as in the image).
Images are rendered (and JPEG-encoded) in parallel worker processes; see ``shapes_render.py``.
"""

import dataclasses
import multiprocessing
import os

import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import utils as tfds_utils

from jaxdet.data import features as features_lib
from jaxdet.data import shapes_render

_SPLITS = ("train", "validation", "test")
_ID_STRIDE = 10_000_000  # image ids: split_index * _ID_STRIDE + index


@dataclasses.dataclass(eq=False)
class ShapesConfig(tfds.core.BuilderConfig):
  """Size and seed of a `shapes` variant."""
  num_train: int = 8000
  num_validation: int = 1000
  num_test: int = 1000
  image_size: int = 256
  seed: int = 0


class Shapes(tfds.core.GeneratorBasedBuilder):
  """Coloured shapes (circle, square, triangle, star, hexagon, cross) on cluttered backgrounds."""

  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "1.1.0": "Objects at least 16 px, at least 70% visible (easier to learn).",
                   "2.0.0": "`segmentation/mask`: per-pixel class ids (0 background, label + 1; "
                            "same images and boxes as 1.1.0)."}
  BUILDER_CONFIGS = [
      ShapesConfig(name="default", description="8000/1000/1000 images, 256x256."),
      ShapesConfig(name="small", description="800/100/100 images, 256x256.",
                   num_train=800, num_validation=100, num_test=100),
      ShapesConfig(name="tiny", description="32/8/8 images, 256x256 (tests).",
                   num_train=32, num_validation=8, num_test=8),
  ]
  DEFAULT_CONFIG_NAME = "default"

  # TFDS derives code_path from importlib resources, which needs the `importlib_resources`
  # backport for editable installs; the file path is all it needs (no checksums file here).
  @tfds_utils.classproperty
  @classmethod
  def code_path(cls):
    return epath.Path(__file__)

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=features_lib.detection_features(shapes_render.CLASS_NAMES,
                                                 encoding_format="jpeg", with_masks=True),
        # Examples are already in random order (procedural); skipping TFDS's shuffle step
        # saves a write + read pass over the data.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # procedural: nothing to download
    cfg = self.builder_config
    sizes = (cfg.num_train, cfg.num_validation, cfg.num_test)
    return {name: self._generate_examples(split_index=i, num_examples=n)
            for i, (name, n) in enumerate(zip(_SPLITS, sizes))}

  def _generate_examples(self, split_index, num_examples):
    cfg = self.builder_config
    jobs = [([cfg.seed, split_index, i], cfg.image_size, split_index * _ID_STRIDE + i)
            for i in range(num_examples)]
    workers = _num_workers()
    if workers <= 1 or num_examples < 256:
      yield from map(shapes_render.render_example, jobs)
      return
    # spawn: the parent has TensorFlow loaded, which is not fork-safe.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
      yield from pool.imap(shapes_render.render_example, jobs, chunksize=64)


def _num_workers():
  env = os.environ.get("JAXDET_DATA_WORKERS")
  return int(env) if env else (os.cpu_count() or 1)


def build(config="default", *, data_dir=None):
  """Builds (if needed) a `shapes` variant and returns its builder.

  Args:
    config: a config name (``default``, ``small``, ``tiny``) or a ``ShapesConfig``.
    data_dir: TFDS data dir (TFDS default when None).

  Returns:
    the prepared ``tfds.core.DatasetBuilder``.
  """
  builder = Shapes(config=config, data_dir=data_dir, file_format="array_record")
  builder.download_and_prepare(file_format="array_record")
  return builder


def render_split_image(index, *, split="train", config="default", with_mask=False):
  """Re-renders one image without TFDS, e.g. for tests: ``(image, boxes_xyxy, labels)``, plus
  the ``[S, S]`` uint8 semantic mask with ``with_mask``."""
  cfg = next(c for c in Shapes.BUILDER_CONFIGS if c.name == config)
  out = shapes_render.render([cfg.seed, _SPLITS.index(split), index], image_size=cfg.image_size,
                             return_owner=with_mask)
  if with_mask:
    image, boxes, labels, owner = out
    return image, boxes, labels, shapes_render.semantic_mask(owner, labels)
  return out


