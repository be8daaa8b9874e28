"""Inference: `jaxdet.inference.load` holds `load(workdir_or_checkpoint) -> Detector`, `Detector`
and `build_detector`; `jaxdet.load` is the short name.

Loading for inference is not training, so it lives outside `jaxdet.train` (it reads the training
config and checkpoint formats from there).
"""
