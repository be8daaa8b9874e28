import pathlib
import sys

import pytest

from jaxdet import cli

# Lets the tests import the NumPy reference and the stand-in detector as plain modules.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
# ... and the NumPy post-processing reference shared with tests/models.
sys.path.insert(1, str(pathlib.Path(__file__).parents[1] / "models"))
# `import jaxdet_export` then means this checkout's export/ folder, installed or not.
cli.import_export_package()

import export_testlib  # noqa: E402  (needs the sys.path entry above)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
  """A workdir with one best checkpoint of a small YOLO (calibrated random init)."""
  from jaxdet.train import checkpoint
  from jaxdet.train import config as config_lib
  detector = export_testlib.zoo_detector("yolo_anchor_free")
  path = tmp_path_factory.mktemp("workdir")
  meta = {"class_names": list(detector.class_names), "config": config_lib.to_json(detector.config)}
  manager = checkpoint.best_manager(path)
  checkpoint.save_best(manager, step=1, model_variables=detector.variables, meta=meta, ap=0.5)
  return path


@pytest.fixture(scope="session")
def model_path(workdir):
  path = workdir / "model.onnx"
  assert cli.main(["export", "--workdir", str(workdir), "--output", str(path)]) == 0
  return path
