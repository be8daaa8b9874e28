"""jaxdet: object detection in JAX.

Data flow: ``jaxdet.data`` -> ``jaxdet.models`` -> ``jaxdet.losses`` -> ``jaxdet.train`` ->
``jaxdet.eval`` -> checkpoints -> ``export/`` (ONNX, outside this package).
"""

__version__ = "0.1.0"


def __getattr__(name):
  # `jaxdet.load` is imported lazily so `import jaxdet` stays cheap (no TF/orbax import).
  if name == "load":
    from jaxdet.inference.load import load
    return load
  raise AttributeError(f"module 'jaxdet' has no attribute {name!r}")
