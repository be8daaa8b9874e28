"""sources.check_dataset: a misspelled name lists the prepared datasets, suggests one, creates
nothing."""

import os

import numpy as np
import pytest
from PIL import Image

from jaxdet.data import importers
from jaxdet.data import sources


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("src")
  (root / "images").mkdir()
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "a.png")
  (root / "labels").mkdir()
  (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
  for name in ("my_photos", "fruit"):
    importers.import_data("yolo", images=str(root / "images"), annotations=str(root / "labels"),
                          name=name, data_dir=str(root / "tfds"), classes=["x"])
  return str(root / "tfds")


def test_local_datasets(data_dir):
  assert sources.local_datasets(data_dir) == ["fruit", "my_photos"]
  assert sources.local_datasets(os.path.join(data_dir, "nope")) == []


@pytest.mark.parametrize("name", ["my_photos", "fruit", "shapes", "shapes/tiny", "voc/2007",
                                  "my_photos:1.0.0", "fruit/whatever"])
def test_known_names_pass(data_dir, name):
  sources.check_dataset(name, data_dir)


def test_misspelled_name(data_dir, tmp_path):
  with pytest.raises(ValueError) as e:
    sources.check_dataset("my_fotos", data_dir)
  msg = str(e.value)
  assert "\n" not in msg and len(msg) < 400  # not TFDS's 460-line catalogue
  assert "fruit, my_photos" in msg and "Did you mean 'my_photos'?" in msg and data_dir in msg
  with pytest.raises(ValueError, match="no config 'tinyy'.*tiny"):
    sources.check_dataset("shapes/tinyy", data_dir)
  missing = str(tmp_path / "empty")
  with pytest.raises(ValueError, match="datasets there: none"):
    sources.check_dataset("my_fotos", missing)
  assert not os.path.exists(missing)  # nothing created


def test_masks_required_and_checked(data_dir):
  import types
  from jaxdet.data import shapes  # noqa: F401  (registers the builder for the old-build hint)
  b = sources.builder("my_photos", data_dir)
  assert not sources.has_masks(b)
  with pytest.raises(ValueError, match=r"'my_photos' \(version 1.0.0\) has no 'segmentation/mask'"):
    sources.require_masks(b, "my_photos")
  old = types.SimpleNamespace(info=types.SimpleNamespace(version="1.1.0", features={}))
  hint = r"\(version 1.1.0\).*old build.*2.0.0.*jaxdet data build shapes/tiny`"
  with pytest.raises(ValueError, match=hint):
    sources.require_masks(old, "shapes/tiny")
  record = {"image": np.zeros((4, 6, 3), np.uint8), "image/id": 7,
            "segmentation/mask": np.zeros((4, 5, 1), np.uint8)}
  with pytest.raises(ValueError, match="image id 7: mask of size 5x4 .* image is 6x4"):
    sources.record_to_example(record, masks=True)
  ex = sources.record_to_example(dict(record, **{"segmentation/mask": np.ones((4, 6, 1))}),
                                 masks=True)
  assert ex["mask"].shape == (4, 6) and ex["mask"].dtype == np.uint8
