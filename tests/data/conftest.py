"""Shared fixtures: a tiny `shapes` dataset built once per test process."""

import pytest


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
  """TFDS data dir holding `shapes/tiny` (32/8/8 images)."""
  from jaxdet.data import shapes
  data_dir = tmp_path_factory.mktemp("tfds")
  shapes.build("tiny", data_dir=str(data_dir))
  return str(data_dir)
