import pathlib
import sys

from jaxdet import cli

# Lets the tests import the NumPy reference and the stand-in detector as plain modules.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
# `import jaxdet_export` then means this checkout's export/ folder, installed or not.
cli.import_export_package()
