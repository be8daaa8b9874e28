import pathlib
import sys

# Lets the model tests (also those in subfolders) import the shared helpers `models_testlib` and
# `export_testlib` (ONNX parity in the contract test) as plain modules.
_HERE = pathlib.Path(__file__).parent
for _path in (_HERE, _HERE.parent / "export"):
  if str(_path) not in sys.path:
    sys.path.insert(0, str(_path))
