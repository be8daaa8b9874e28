import pathlib
import sys

# Lets the tests import the NumPy reference and the stand-in detector as plain modules.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
# ... and the NumPy post-processing reference shared with tests/models.
sys.path.insert(1, str(pathlib.Path(__file__).parents[1] / "models"))
