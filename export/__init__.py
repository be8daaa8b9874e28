"""ONNX export of jaxdet detectors and their onnxruntime serving (outside the `jaxdet` package).

- `export_onnx(detector, path, ...)`: one self-contained ONNX detector (uint8 images in, final
  detections out; preprocessing, decoding and class-aware NMS inside the graph).
- `Detector(path, providers=None)`: an onnxruntime session taking uint8 images of any size.

Attributes are imported lazily so serving (`Detector`) never imports JAX or the converter.
"""

_ATTRIBUTES = {"export_onnx": "export.onnx_export", "Detector": "export.runtime",
               "ExportMetadata": "export.metadata"}


def __getattr__(name):
  if name in _ATTRIBUTES:
    import importlib  # pylint: disable=g-import-not-at-top
    return getattr(importlib.import_module(_ATTRIBUTES[name]), name)
  raise AttributeError(f"module 'export' has no attribute {name!r}")


__all__ = ["Detector", "ExportMetadata", "export_onnx"]
