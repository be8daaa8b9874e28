"""The images a predictor accepts, normalised once for `jaxdet.load(...).predict` and for the ONNX
runtime (`jaxdet_export.Detector.predict`), so that both take the same inputs and say the same
things about bad ones.

Accepted: a uint8 array `[N, H, W, 3]` or `[H, W, 3]`; a PIL image; a path (`str` or
`os.PathLike`) to an image file, read with its EXIF orientation applied; or a list / tuple of
any of these (arrays `[H, W, 3]`), of mixed sizes. In-memory images (arrays, PIL) are taken as
they are: boxes refer to their pixels.
"""

import dataclasses
import os
import pathlib

import numpy as np

from jaxdet.data import image_io

_LAYOUT = "uint8 RGB [N, H, W, 3] or [H, W, 3], a PIL image, an image path, or a list of these"


def read_image(path) -> np.ndarray:
  """Reads an image file as displayed: EXIF orientation applied, converted to RGB.

  Args:
    path: `str` or `os.PathLike` of a PNG, JPEG, ... file.

  Returns:
    `[H, W, 3]` uint8.

  Raises:
    FileNotFoundError: no such file.
    ValueError: a URL, or a file that cannot be decoded.
  """
  text = os.fspath(path)
  if "://" in text:
    raise ValueError(f"URLs are not supported (no network access): {text}; download the file "
                     f"and pass its path")
  if not pathlib.Path(text).is_file():
    raise FileNotFoundError(f"image not found: {text}")
  try:
    image = np.asarray(image_io.read_image(text))
  except image_io.ImageReadError as e:  # already one line naming the file
    raise ValueError(_first_line(e)) from e
  return _checked(image, f"image {text}")


def as_image_list(images) -> list[np.ndarray]:
  """Normalises predictor inputs to a list of images.

  Args:
    images: see the module docstring.

  Returns:
    list of N >= 1 `[H_i, W_i, 3]` uint8 arrays.

  Raises:
    FileNotFoundError: a path that does not exist.
    ValueError: anything else that is not an image, naming what was passed (its type, shape,
      dtype or path) as the caller gave it.
  """
  if isinstance(images, (list, tuple)):
    if not images:
      raise ValueError(f"images must not be empty (N, H, W > 0), got an empty "
                       f"{type(images).__name__}")
    return [_one_image(im, f"images[{i}]") for i, im in enumerate(images)]
  if _is_path(images) or _is_pil(images):
    return [_one_image(images, "image")]
  array = _as_array(images, "images")
  if array.ndim == 4:
    _check_dtype(array, "images")
    if array.shape[-1] != 3:
      raise ValueError(f"images must be [N, H, W, 3] or [H, W, 3] with 3 (RGB) channels last, "
                       f"got shape {array.shape}")
    if min(array.shape) == 0:
      raise ValueError(f"images must not be empty (N, H, W > 0), got shape {array.shape}")
    return list(array)
  if array.ndim == 3:
    return [_checked(array, "images")]
  raise ValueError(f"images must be {_LAYOUT}; got shape {array.shape}")


def _one_image(image, what) -> np.ndarray:
  if _is_path(image):
    return read_image(image)
  if _is_pil(image):
    return _checked(np.asarray(image.convert("RGB")), what)
  array = _as_array(image, what)
  if array.ndim != 3:
    raise ValueError(f"{what} must be [H, W, 3] uint8 RGB, got shape {array.shape}")
  return _checked(array, what)


def _checked(image: np.ndarray, what: str) -> np.ndarray:
  """`image` itself after checking it is `[H, W, 3]` uint8 with H, W > 0."""
  _check_dtype(image, what)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"{what} must be [N, H, W, 3] or [H, W, 3] with 3 (RGB) channels last, got "
                     f"shape {image.shape}")
  if min(image.shape) == 0:
    raise ValueError(f"{what} must not be empty (N, H, W > 0), got shape {image.shape}")
  return image


def _check_dtype(array, what):
  if array.dtype != np.uint8:
    raise ValueError(f"{what} must be uint8 RGB (0..255), got dtype {array.dtype} "
                     f"(shape {array.shape})")


def _as_array(value, what) -> np.ndarray:
  if isinstance(value, np.ndarray):
    return value
  if not hasattr(value, "__array__"):  # jax arrays, torch CPU tensors, ... convert
    raise ValueError(f"{what} must be {_LAYOUT}; got {type(value).__name__}")
  return np.asarray(value)


def _is_path(value) -> bool:
  return isinstance(value, (str, os.PathLike))


def _is_pil(value) -> bool:
  try:
    from PIL import Image  # pylint: disable=g-import-not-at-top
  except ImportError:
    return False
  return isinstance(value, Image.Image)


def resize_batch(images: list[np.ndarray], size: int, resize="letterbox"):
  """Resizes images to the uint8 network input by the model's rule (`config.model.preprocess`).

  For the rules that resize uint8 pixels (letterbox or stretch, PIL or OpenCV resampling:
  `jaxdet.data.preprocess.resizes_uint8`); `network_inputs` serves every rule.

  Args:
    images: list of `[H_i, W_i, 3]` uint8 (from `as_image_list`).
    size: S, the network input side.
    resize: "letterbox" (top-left, `jaxdet.data.preprocess.letterbox_image`) or "stretch" with
      PIL's resampling, or the model's `Preprocess` (its rule and interpolation).

  Returns:
    `(inputs [N, S, S, 3] uint8, scale [N, 2] float32 (sx, sy), limits [N, 4] float32
    (W, H, W, H))`; an S x S image is passed through with scale 1.
  """
  from jaxdet.data.preprocess import resize_to_input  # pylint: disable=g-import-not-at-top
  inputs, scales, limits = [], [], []
  for image in images:
    h, w = image.shape[:2]
    if (h, w) == (size, size):
      boxed, scale = image, (1.0, 1.0)
    else:
      boxed, scale = resize_to_input(image, size, resize)
    inputs.append(boxed)
    scales.append(scale)
    limits.append((w, h, w, h))
  return np.stack(inputs), np.asarray(scales, np.float32), np.asarray(limits, np.float32)


@dataclasses.dataclass(frozen=True)
class InputGroup:
  """Images that share one network input shape (`network_inputs`).

  Attributes:
    indices: int64 `[n]`, their positions in the caller's list.
    images: the network's input: uint8 `[n, S, S, 3]` resized pixels for the rules that resize
      uint8 (`preprocess.resizes_uint8`: the program normalizes them, as the ONNX graph does), else
      float32 `[n, Hc, Wc, 3]` resized, normalized and padded.
    image_hw: int32 `[n, 2]`, `(new_h, new_w)`: each image's extent in `images`.
    scale: float32 `[n, 2]`, `(new_w / w, new_h / h)`: network pixels per image pixel (what
      `resize_batch` gives; maps proposals in, and boxes back for the uint8 rules).
    back: float32 `[n, 2]`, `(w / new_w, h / new_h)` in float32: image pixels per network pixel
      along x and y (torchvision's `resize_boxes` ratios).
    limits: float32 `[n, 4]`, `(W, H, W, H)` of each image.
  """
  indices: np.ndarray
  images: np.ndarray
  image_hw: np.ndarray
  scale: np.ndarray
  back: np.ndarray
  limits: np.ndarray


def network_inputs(images: list[np.ndarray], size: int, pre) -> list[InputGroup]:
  """The network inputs of images of any size, grouped by input shape.

  Every rule of `config.model.preprocess` (`jaxdet.data.preprocess.network_input`): letterbox
  and stretch give one S x S group; the "rcnn" rule gives one group per padded extent (each image
  at its own size padded to a multiple of `size_divisible`, as torchvision runs one image).

  Args:
    images: list of `[H_i, W_i, 3]` uint8 (from `as_image_list`).
    size: S, the model's input side.
    pre: the model's `jaxdet.data.preprocess.Preprocess`.

  Returns:
    list of `InputGroup`, in order of first appearance.
  """
  from jaxdet.data import preprocess  # pylint: disable=g-import-not-at-top
  groups = {}
  for i, image in enumerate(images):
    h, w = image.shape[:2]
    if preprocess.resizes_uint8(pre):  # uint8 pixels, normalized by the program
      pixels = resize_batch([image], size, pre)[0][0]
      new_h, new_w = preprocess.resized_shape(h, w, size, pre)
    else:
      pixels, (new_h, new_w) = preprocess.network_input(image, size, pre)
    back = (np.float32(w) / np.float32(new_w), np.float32(h) / np.float32(new_h))
    groups.setdefault(pixels.shape, []).append(
        (i, pixels, (new_h, new_w), (new_w / w, new_h / h), back, (w, h, w, h)))
  out = []
  for members in groups.values():
    index, pixels, hw, scale, back, limits = zip(*members)
    out.append(InputGroup(indices=np.asarray(index, np.int64), images=np.stack(pixels),
                          image_hw=np.asarray(hw, np.int32), scale=np.asarray(scale, np.float32),
                          back=np.asarray(back, np.float32),
                          limits=np.asarray(limits, np.float32)))
  return out


def single_images(group: InputGroup) -> list[InputGroup]:
  """An `InputGroup` as groups of one image each (in order)."""
  return [InputGroup(**{f.name: getattr(group, f.name)[i:i + 1]
                        for f in dataclasses.fields(InputGroup)})
          for i in range(len(group.indices))]


def boxes_to_image_pixels(boxes_xyxy, back, limits, num_detections=None) -> np.ndarray:
  """Maps network-input boxes of an `InputGroup` back to each image's pixels.

  Args:
    boxes_xyxy: `[n, K, 4]` float boxes in network-input pixels.
    back: `[n, 2]` float32 `InputGroup.back`.
    limits: `[n, 4]` float32 `InputGroup.limits`.
    num_detections: optional `[n]` int; boxes past it are zeroed.

  Returns:
    `[n, K, 4]` float32: times (bx, by, bx, by) in float32 (torchvision's `resize_boxes`), clipped
    to the image.
  """
  factor = np.concatenate([back, back], axis=1)[:, None, :].astype(np.float32)
  return _clip_and_zero(np.asarray(boxes_xyxy, np.float32) * factor, limits, num_detections)


def _clip_and_zero(boxes, limits, num_detections):
  boxes = np.clip(boxes, 0.0, limits[:, None, :])
  if num_detections is not None:
    valid = np.arange(boxes.shape[1])[None, :] < np.asarray(num_detections)[:, None]
    boxes = np.where(valid[..., None], boxes, 0.0)
  return boxes.astype(np.float32)


def boxes_to_images(boxes_xyxy, scale, limits, num_detections=None) -> np.ndarray:
  """Maps network-input boxes back to each image's pixels.

  Args:
    boxes_xyxy: `[N, K, 4]` float boxes in network-input pixels.
    scale: `[N, 2]` float32 (sx, sy) from `resize_batch`.
    limits: `[N, 4]` float32 (W, H, W, H) from `resize_batch`.
    num_detections: optional `[N]` int; boxes past it are zeroed.

  Returns:
    `[N, K, 4]` float32: divided by (sx, sy, sx, sy) in float32 and clipped to the image.
  """
  boxes = np.asarray(boxes_xyxy, np.float32) / np.concatenate([scale, scale], axis=1)[:, None, :]
  return _clip_and_zero(boxes, limits, num_detections)


def check_proposals_wanted(external, proposals, proposal_mask, model_name):
  """Raises a one-line ValueError when `proposals` is missing for a Fast R-CNN model (external
  proposals) or given to another model."""
  if external and proposals is None:
    raise ValueError(f"this {model_name} model runs on external proposals (Fast R-CNN): pass "
                     f"proposals=[N, P, 4] float32 xyxy in the images' pixels")
  if not external and (proposals is not None or proposal_mask is not None):
    raise ValueError(f"proposals= is only for Fast R-CNN models (config.model.proposals="
                     f"'external'); this {model_name} model finds its own boxes")


def proposals_to_inputs(proposals_xyxy, proposal_mask, scale, *, num_images):
  """Checks external proposals (Fast R-CNN) and maps them into network-input pixels.

  The same resize as the images: boxes are multiplied by (sx, sy, sx, sy) of `resize_batch`
  (its letterbox is top-left, so there is no offset).

  Args:
    proposals_xyxy: float `[N, P, 4]` xyxy in the pixels of the images as passed (N images).
    proposal_mask: optional bool `[N, P]` (False: a padding row); None: all valid.
    scale: `[N, 2]` float32 (sx, sy) from `resize_batch`.
    num_images: N.

  Returns:
    `(proposals float32 [N, P, 4] in network-input pixels, mask bool [N, P])`.

  Raises:
    ValueError: a wrong shape or dtype, naming the argument and its shape.
  """
  if not hasattr(proposals_xyxy, "__array__") and not isinstance(proposals_xyxy, (list, tuple)):
    raise ValueError(f"proposals must be a float array [N, P, 4] (xyxy image pixels), got "
                     f"{type(proposals_xyxy).__name__}")
  boxes = np.asarray(proposals_xyxy)
  if boxes.dtype.kind not in "fiu" or boxes.ndim != 3 or boxes.shape[0] != num_images \
      or boxes.shape[1] < 1 or boxes.shape[2] != 4:
    raise ValueError(f"proposals must be a float array [N, P, 4] with N = {num_images} images "
                     f"and P >= 1, got shape {boxes.shape} dtype {boxes.dtype}")
  if proposal_mask is None:
    mask = np.ones(boxes.shape[:2], bool)
  else:
    mask = np.asarray(proposal_mask)
    if mask.shape != boxes.shape[:2] or mask.dtype != bool:
      raise ValueError(f"proposal_mask must be bool [N, P] = {boxes.shape[:2]} like proposals, "
                       f"got shape {mask.shape} dtype {mask.dtype}")
  factor = np.concatenate([scale, scale], axis=1)[:, None, :].astype(np.float32)
  return boxes.astype(np.float32) * factor, mask


def _first_line(error) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__
