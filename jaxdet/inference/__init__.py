"""Inference: `load(workdir_or_checkpoint) -> Detector`, a trained detector ready to predict or export.

Loading for inference is not training, so it lives outside `jaxdet.train` (it reads the training
config and checkpoint format from there). Names are imported lazily so `import jaxdet.inference`
stays cheap.
"""

import importlib

_LAZY = {
    "load": ("jaxdet.inference.load", "load"),
    "Detector": ("jaxdet.inference.load", "Detector"),
    "build_detector": ("jaxdet.inference.load", "build_detector"),
}

__all__ = sorted(_LAZY)


def __getattr__(name):
  if name in _LAZY:
    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)
  raise AttributeError(f"module 'jaxdet.inference' has no attribute {name!r}")
