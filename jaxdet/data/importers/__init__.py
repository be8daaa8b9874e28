"""Converters from user annotation formats (COCO, VOC, YOLO, KITTI) to jaxdet TFDS datasets."""

import importlib
import os

FORMATS = ("coco", "voc", "yolo", "kitti")
MASK_FORMATS = ("voc", "coco")  # formats with semantic masks (`masks=True`)


def import_data(format, *, images, annotations, name, data_dir, split="train", split_ratios=None,
                classes=None, on_error="skip", log=None,
                overwrite=False, masks=False):  # pylint: disable=redefined-builtin
  """Reads ``annotations`` in ``format`` and writes the TFDS dataset ``name`` into ``data_dir``.

  Args:
    format: one of ``FORMATS``.
    images: folder of images.
    annotations: COCO json file (or a folder of per-split json files), or VOC / YOLO / KITTI
      label folder. Data that is already split (see the README) keeps its splits.
    name: dataset name (readable as ``input_pipeline(name, ..., data_dir=data_dir)``).
    data_dir: TFDS data dir.
    split: split name when ``split_ratios`` is None and the data is not already split.
    split_ratios: optional (train, validation, test) ratios summing to 1.
    classes: optional list of class names (order = label ids).
    on_error: ``"skip"`` or ``"fail"``.
    log: ``print``-like function for per-file messages.
    overwrite: replace an existing dataset ``name`` in ``data_dir``.
    masks: also import semantic masks as ``segmentation/mask`` (``voc``: the
      ``SegmentationClass`` palette PNGs; ``coco``: instance polygons / RLE rasterized with
      pycocotools). See the README for the conventions.

  Returns:
    the report dict of ``common.import_dataset``.

  Raises:
    common.DataImportError: bad arguments or data (message names the file).
  """
  from jaxdet.data.importers import common  # pylint: disable=g-import-not-at-top
  if format not in FORMATS:
    raise common.DataImportError(f"unknown format {format!r}; expected one of {FORMATS}")
  if masks and format not in MASK_FORMATS:
    raise common.DataImportError(f"--masks works with --format {' or '.join(MASK_FORMATS)}, not "
                                 f"{format!r}")
  reader = importlib.import_module(f"jaxdet.data.importers.{format}")
  kw = {"masks": True} if masks else {}
  class_names, raw = reader.read(images, annotations, class_names=classes, **kw)
  # (After the reader: its message about the annotations comes first.) Ultralytics' data.yaml
  # names its own image folders.
  uses_images = not (format == "yolo" and str(annotations).endswith((".yaml", ".yml")))
  if uses_images and not os.path.isdir(images):
    raise common.DataImportError(f"images folder not found: {images} (--images)")
  return common.import_dataset(class_names, raw, name=name, data_dir=data_dir, split=split,
                               split_ratios=split_ratios, on_error=on_error, log=log,
                               overwrite=overwrite, masks=masks)
