"""ONNX export of jaxdet detectors and their onnxruntime serving (outside the `jaxdet` package).

Imported as `jaxdet_export` (the `export/` folder is installed under that name); the old name
`export` works only from a source checkout on `PYTHONPATH`, with a FutureWarning.

- `export_onnx(detector, path, ...)`: one self-contained ONNX detector (uint8 images in, final
  detections out; preprocessing, decoding and class-aware NMS inside the graph).
- `Detector(path, providers=None)`: an onnxruntime session taking uint8 images of any size.
- `export_segmentation_onnx(segmenter, path, ...)`, `Segmenter(path)`: the same for
  segmentation models (masks, argmax in the graph).

Attributes are imported lazily so serving (`Detector`) never imports JAX or the converter.
"""

_ATTRIBUTES = {"export_onnx": ".onnx_export", "Detector": ".runtime",
               "ExportMetadata": ".metadata",
               # Segmentation models (jaxdet.load of a task="segmentation" workdir).
               "export_segmentation_onnx": ".segmentation", "Segmenter": ".segmentation"}

if __name__ == "export":
  import warnings  # pylint: disable=g-import-not-at-top
  warnings.warn("the jaxdet export package is now imported as `jaxdet_export` (e.g. "
                "`from jaxdet_export import Detector`); the name `export` will go away",
                FutureWarning, stacklevel=2)


def __getattr__(name):
  if name in _ATTRIBUTES:
    import importlib  # pylint: disable=g-import-not-at-top
    return getattr(importlib.import_module(_ATTRIBUTES[name], __name__), name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Detector", "ExportMetadata", "Segmenter", "export_onnx", "export_segmentation_onnx"]
