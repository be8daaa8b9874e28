"""Training: configs, optimizers, the jitted step, checkpoints, the loop (inference loading: `jaxdet.inference`).

Names are imported lazily so `jaxdet train --help` and `import jaxdet.train.config` stay cheap.
"""

import importlib

_LAZY = {
    "train_and_evaluate": ("jaxdet.train.loop", "train_and_evaluate"),
    "TrainingError": ("jaxdet.train.loop", "TrainingError"),
    "TrainingInterrupted": ("jaxdet.train.interrupt", "TrainingInterrupted"),
    "evaluate_workdir": ("jaxdet.train.evaluate", "evaluate_workdir"),
    "make_train_step": ("jaxdet.train.step", "make_train_step"),
    "TrainState": ("jaxdet.train.state", "TrainState"),
    "create_train_state": ("jaxdet.train.state", "create_train_state"),
    "build_optimizer": ("jaxdet.train.optimizers", "build_optimizer"),
    "load_config_file": ("jaxdet.train.config", "load_config_file"),
    # Inference loading lives in `jaxdet.inference`; these names stay for old imports.
    "load": ("jaxdet.inference.load", "load"),
    "Detector": ("jaxdet.inference.load", "Detector"),
    "build_detector": ("jaxdet.inference.load", "build_detector"),
}

__all__ = sorted(_LAZY)


def __getattr__(name):
  if name in _LAZY:
    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)
  raise AttributeError(f"module 'jaxdet.train' has no attribute {name!r}")
