"""Opening TFDS datasets for random access and turning records into plain NumPy examples."""

import difflib
import io
import logging
import os
import re

import numpy as np

_SHAPES_PREFIX = "shapes"


def _no_opencv_hint(record):
  # TFDS recommends installing OpenCV on the first PIL-decoded image: noise for jaxdet users.
  return not str(record.msg).startswith("OpenCV is not installed")


def _tfds():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  absl_logger = logging.getLogger("absl")
  if _no_opencv_hint not in absl_logger.filters:
    absl_logger.addFilter(_no_opencv_hint)
  return tfds


def show_progress_bars(enabled):
  """Turns TFDS's own tqdm bars (building `shapes` on first use, preparing a dataset) on or off
  for this process (`jaxdet train --no-progress`)."""
  _tfds().display_progress_bar(bool(enabled))


def _is_shapes(name):
  return name == _SHAPES_PREFIX or name.startswith(_SHAPES_PREFIX + "/") or name.startswith(
      _SHAPES_PREFIX + ":")


def _default_data_dir(data_dir):
  return os.path.expanduser(str(data_dir)) if data_dir else _tfds().core.constants.DATA_DIR


def local_datasets(data_dir=None):
  """Names of the datasets prepared in ``data_dir`` (``mydata``, ``shapes/tiny``, ``voc/2007``).

  Only reads folders (a ``dataset_info.json`` two or three levels down); creates nothing.
  """
  data_dir = _default_data_dir(data_dir)
  found = set()
  if not os.path.isdir(data_dir):
    return []
  for name in sorted(os.listdir(data_dir)):
    top = os.path.join(data_dir, name)
    if name.startswith(".") or name == "downloads" or not os.path.isdir(top):
      continue
    for sub in sorted(os.listdir(top)):
      if os.path.isfile(os.path.join(top, sub, "dataset_info.json")):
        found.add(name)  # name/version
      elif os.path.isdir(os.path.join(top, sub)) and any(
          os.path.isfile(os.path.join(top, sub, v, "dataset_info.json"))
          for v in os.listdir(os.path.join(top, sub))):
        found.add(f"{name}/{sub}")  # name/config/version
  return sorted(found)


def check_dataset(name, data_dir=None):
  """Fails early, and clearly, on a dataset name that cannot be opened.

  Accepts `shapes` (built on first use), any dataset prepared in ``data_dir`` and any dataset
  registered with TFDS (``voc``, ``coco``: their own messages say how to prepare them). Reads
  folders only: creates nothing, so a caller can check before making its workdir.

  Args:
    name: dataset as the user passed it (``mydata``, ``shapes/tiny``, ``voc/2007:5.0.0``).
    data_dir: TFDS data dir (TFDS default when None).

  Raises:
    ValueError: one line naming ``name`` and ``data_dir``, listing the datasets found there and
      the nearest one (difflib).
  """
  base = re.split(r"[:\[]", name)[0]
  root = base.split("/")[0]
  if _is_shapes(base):
    from jaxdet.data import shapes  # pylint: disable=g-import-not-at-top
    configs = [c.name for c in shapes.Shapes.BUILDER_CONFIGS]
    if base == root or base.split("/", 1)[1] in configs:
      return
    raise ValueError(f"dataset {name!r}: `shapes` has no config {base.split('/', 1)[1]!r}; "
                     f"configs: {', '.join(configs)}")
  found = local_datasets(data_dir)
  if base in found or root in {f.split("/")[0] for f in found}:
    return  # a wrong config / version of a prepared dataset: TFDS's message lists the right ones
  if root:
    try:
      _tfds().builder_cls(root)
      return
    except Exception:  # pylint: disable=broad-except  (DatasetNotFoundError lists 460 names)
      pass
  candidates = found + ["shapes"]
  near = difflib.get_close_matches(base, candidates, n=1, cutoff=0.5)
  hint = f" Did you mean {near[0]!r}?" if near else ""
  raise ValueError(
      f"dataset {name!r} not found in data_dir {_default_data_dir(data_dir)} (datasets there: "
      f"{', '.join(found) if found else 'none'}; `shapes` is built on first use).{hint} Import "
      f"your own data with `jaxdet data import --name NAME --data-dir DIR`.")


def builder(dataset, data_dir=None, *, prepare_shapes=True):
  """The TFDS builder of ``dataset``; builds `shapes` on first use (procedural, no download).

  Args:
    dataset: TFDS name such as ``shapes``, ``shapes/tiny``, ``voc/2007``, ``coco/2017`` or an
      imported dataset's NAME.
    data_dir: TFDS data dir (TFDS default when None).
    prepare_shapes: build `shapes` when it is not prepared yet.

  Returns:
    ``tfds.core.DatasetBuilder``.

  Raises:
    ValueError: the dataset is not registered nor prepared in ``data_dir``.
  """
  tfds = _tfds()
  if _is_shapes(dataset):
    from jaxdet.data import shapes  # pylint: disable=g-import-not-at-top  (registers the builder)
    b = tfds.builder(dataset, data_dir=data_dir, file_format="array_record")
    if prepare_shapes and not b.is_prepared():
      logging.info("Building %s in %s (procedural, about a minute)", dataset, b.data_dir)
      b.download_and_prepare(file_format="array_record")
    return b
  check_dataset(dataset, data_dir)
  try:
    return tfds.builder(dataset, data_dir=data_dir)
  except Exception as e:  # TFDS raises several types for unknown names / missing files.
    raise ValueError(f"dataset {dataset!r} not found (data_dir={data_dir or 'TFDS default'}): "
                     f"{e}") from e


def class_names(b):
  """Class names of a prepared builder's ``objects/label`` ClassLabel."""
  return tuple(b.info.features["objects"]["label"].names)


def decoders(b, *, decode_image=True, decode_mask=True):
  """TFDS ``decoders`` that leave the image and/or the ``segmentation/mask`` encoded (bytes):
  a detection pipeline skips decoding the mask PNG. None when everything is decoded."""
  from jaxdet.data.masks import MASK_FEATURE  # pylint: disable=g-import-not-at-top
  skip = [] if decode_image else ["image"]
  if not decode_mask and MASK_FEATURE in b.info.features:
    skip.append(MASK_FEATURE)
  return {k: _tfds().decode.SkipDecoding() for k in skip} or None


def open_split(dataset, split, data_dir=None, *, decode_image=True, decode_mask=True):
  """Random-access source of one split (``tfds.data_source`` over ArrayRecord); the image and the
  mask stay encoded bytes when not decoded.

  Returns:
    ``(source, b)``: ``source[i]`` is the TFDS record dict, ``len(source)`` its size; ``b`` the
    builder.
  """
  tfds = _tfds()
  b = builder(dataset, data_dir)
  base_split = re.split(r"[\[+]", split)[0]  # "train[:10%]" -> "train"
  if b.info.splits and base_split not in b.info.splits:
    raise ValueError(f"dataset {dataset!r} has no split {split!r}; splits: "
                     f"{sorted(b.info.splits)}")
  try:
    # download=False: never fetch a public dataset implicitly (`shapes` was built above).
    source = tfds.data_source(dataset, split=split, data_dir=data_dir, download=False,
                              decoders=decoders(b, decode_image=decode_image,
                                                decode_mask=decode_mask))
  except NotImplementedError as e:
    raise ValueError(f"dataset {dataset!r} is not stored as array_record, which random access "
                     f"needs; rebuild it with file_format='array_record'") from e
  except (AssertionError, FileNotFoundError) as e:
    raise ValueError(f"dataset {dataset!r} is not prepared in {b.data_dir}; prepare it with "
                     f"TFDS (file_format='array_record') or `jaxdet data import`: {e}") from e
  return source, b


def has_masks(b):
  """Whether a prepared builder's examples have the ``segmentation/mask`` feature."""
  from jaxdet.data.masks import MASK_FEATURE  # pylint: disable=g-import-not-at-top
  return MASK_FEATURE in b.info.features


def require_masks(b, dataset):
  """Raises a one-line ValueError naming ``segmentation/mask`` and ``dataset`` when the builder
  ``b`` has no masks (an old `shapes` build: says to rebuild it)."""
  from jaxdet.data.masks import MASK_FEATURE  # pylint: disable=g-import-not-at-top
  if has_masks(b):
    return
  version = str(b.info.version)
  if _is_shapes(dataset):
    hint = (f"; it is an old build: `shapes` has masks from version 2.0.0, build it with "
            f"`jaxdet data build {dataset.split(':')[0]}`")
  else:
    hint = ("; import masks with `jaxdet data import --masks` (VOC SegmentationClass PNGs, COCO "
            "polygons/RLE)")
  raise ValueError(f"dataset {dataset!r} (version {version}) has no {MASK_FEATURE!r} feature, "
                   f"which masks=True / a segmentation model needs{hint}")


def record_to_example(record, *, drop_crowd=True, masks=False):
  """Converts a TFDS record (our features, after ``tfds_maps``) into a NumPy example.

  Boxes are sanitized: non-finite boxes are dropped, inverted corners sorted, boxes clipped to
  the image and zero-area boxes dropped.

  Args:
    record: dict with ``image`` uint8 ``[H, W, 3]`` (or ``[H, W, 1]``), ``image/id``, and
      ``objects`` with ``bbox`` ``[n, 4]`` TFDS (ymin, xmin, ymax, xmax) normalized, ``label``
      ``[n]``, ``is_crowd`` ``[n]`` (optional), ``is_difficult`` ``[n]`` (optional).
    drop_crowd: drop ``is_crowd`` boxes (they are ignore regions, not targets).
    masks: also return the record's ``segmentation/mask`` as ``mask``.

  Returns:
    dict ``image`` uint8 ``[H, W, 3]``, ``boxes`` float32 ``[n', 4]`` xyxy pixels, ``classes``
    int32 ``[n']``, ``image_id`` int64, ``orig_size`` int32 ``[2]`` (h, w); with ``masks``,
    ``mask`` uint8 ``[H, W]``.

  Raises:
    ValueError: with ``masks``, a record without a mask, or a mask of another size than its image.
  """
  image = np.asarray(record["image"])
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  elif image.shape[-1] == 4:
    image = image[..., :3]
  h, w = image.shape[:2]
  objects = record.get("objects", {})
  bbox = np.asarray(objects.get("bbox", []), np.float32).reshape(-1, 4)
  labels = np.asarray(objects.get("label", []), np.int64).reshape(-1)
  n = min(len(bbox), len(labels))  # mock data can give mismatched lengths
  bbox, labels = bbox[:n], labels[:n]
  crowd = np.asarray(objects.get("is_crowd", np.zeros(n, bool)), bool).reshape(-1)[:n]
  if len(crowd) < n:
    crowd = np.zeros(n, bool)
  ymin, xmin, ymax, xmax = bbox.T
  boxes = np.stack([np.minimum(xmin, xmax) * w, np.minimum(ymin, ymax) * h,
                    np.maximum(xmin, xmax) * w, np.maximum(ymin, ymax) * h], axis=1)
  finite = np.all(np.isfinite(boxes), axis=1)
  boxes = np.clip(np.where(finite[:, None], boxes, 0), 0, [w, h, w, h]).astype(np.float32)
  keep = finite & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
  if drop_crowd:
    keep &= ~crowd
  out = {
      "image": image.astype(np.uint8, copy=False),
      "boxes": boxes[keep].reshape(-1, 4),
      "classes": labels[keep].astype(np.int32),
      "image_id": np.int64(record.get("image/id", -1)),
      "orig_size": np.array([h, w], np.int32),
  }
  if masks:
    from jaxdet.data import masks as masks_lib  # pylint: disable=g-import-not-at-top
    if masks_lib.MASK_FEATURE not in record:
      raise ValueError(f"image id {int(out['image_id'])} has no {masks_lib.MASK_FEATURE!r}")
    out["mask"] = masks_lib.check_mask(record[masks_lib.MASK_FEATURE], image.shape,
                                       where=f"image id {int(out['image_id'])}")
  return out


def image_size_from_bytes(data):
  """``(h, w)`` of an encoded image, reading only its header."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(io.BytesIO(data)) as im:
    return im.size[1], im.size[0]
