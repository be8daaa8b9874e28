"""jaxdet: object detection in JAX.

Data flow: ``jaxdet.data`` -> ``jaxdet.models`` -> ``jaxdet.losses`` -> ``jaxdet.train`` ->
``jaxdet.eval`` -> checkpoints -> ``export/`` (ONNX, outside this package).

Usage::

  import jaxdet
  det = jaxdet.load("runs/demo")     # a training workdir, or a folder from `jaxdet convert`
  out = det.predict("photo.jpg")     # also uint8 [N,H,W,3] arrays, PIL images, lists of them
  out["boxes"], out["scores"], out["classes"], out["num_detections"]  # xyxy in image pixels
  det.class_names, det.image_size

The command line is ``jaxdet`` (``jaxdet --help``: train, evaluate, data, convert, export,
predict). ``load`` and the subpackages (``ops``, ``data``, ``models``, ``losses``, ``train``,
``eval``, ``convert``, ``inference``) are imported on first use, so ``import jaxdet`` stays cheap.
"""

import importlib as _importlib
import os as _os

# TensorFlow (imported by TFDS to encode datasets) logs oneDNN / cpu_feature_guard notices when it
# is imported. Must run before any TF import; a user's own settings win. Level 1 hides INFO only
# (warnings stay, XLA's too); the oneDNN notice ignores the level, so its ops are turned off (TF
# only encodes images here, numerics of training are JAX's).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

__version__ = "0.1.0"

_SUBPACKAGES = ("ops", "data", "models", "losses", "train", "eval", "convert", "inference")
__all__ = ["load", *_SUBPACKAGES]


def __getattr__(name):
  # `jaxdet.load` and the subpackages are imported lazily so `import jaxdet` stays cheap (no
  # JAX/TF/orbax import); every name `__dir__` lists resolves here.
  if name == "load":
    from jaxdet.inference.load import load
    return load
  if name in _SUBPACKAGES:
    return _importlib.import_module(f"jaxdet.{name}")
  raise AttributeError(f"module 'jaxdet' has no attribute {name!r}")


def __dir__():
  # Without it, `dir(jaxdet)` (tab completion, `help`) misses the lazy names.
  return sorted(set(globals()) | set(__all__))
