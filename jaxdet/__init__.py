"""jaxdet: object detection in JAX.

Data flow: ``jaxdet.data`` -> ``jaxdet.models`` -> ``jaxdet.losses`` -> ``jaxdet.train`` ->
``jaxdet.eval`` -> checkpoints -> ``export/`` (ONNX, outside this package).
"""

import os as _os

# TensorFlow (imported by TFDS to encode datasets) logs oneDNN / cpu_feature_guard notices when it
# is imported. Must run before any TF import; a user's own settings win. Level 1 hides INFO only
# (warnings stay, XLA's too); the oneDNN notice ignores the level, so its ops are turned off (TF
# only encodes images here, numerics of training are JAX's).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

__version__ = "0.1.0"


def __getattr__(name):
  # `jaxdet.load` is imported lazily so `import jaxdet` stays cheap (no TF/orbax import).
  if name == "load":
    from jaxdet.inference.load import load
    return load
  raise AttributeError(f"module 'jaxdet' has no attribute {name!r}")
