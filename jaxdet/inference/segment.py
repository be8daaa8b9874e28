"""`Segmenter`: a semantic segmentation model ready for inference (what `jaxdet.load` returns for
a config with `model.task == "segmentation"`, and what the exporter reads).

Masks: int32 class ids per pixel, 0 = background (class names include it: K = C + 1 names).
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

TASK = "segmentation"


@dataclasses.dataclass(frozen=True)
class Segmenter:
  """A segmentation model for inference.

  Attributes:
    model: the Linen module (`jaxdet.models.segmentation`).
    variables: `{"params", "batch_stats"}` (EMA params when trained with EMA).
    config: the resolved training config.
    class_names: K names indexed by mask value (0 = background).
    image_size: S, the square network input size.
    task: "segmentation".
  Normalization and resize rule: `config.model.preprocess` (`jaxdet.data.preprocess`).
  """
  model: Any
  variables: dict
  config: ml_collections.ConfigDict
  class_names: tuple[str, ...]
  image_size: int
  task: str = dataclasses.field(default=TASK, init=False)
  _logits_jit: Callable = dataclasses.field(init=False, repr=False, compare=False)

  def __post_init__(self):
    object.__setattr__(self, "_logits_jit", jax.jit(self._forward_with))

  def forward(self, images_uint8):
    """Normalize + model, pure and jit-able (closes over `variables`).

    Args:
      images_uint8: `[N, H, W, 3]` uint8 (S x S: images already resized by the model's rule).

    Returns:
      logits float32 `[N, H, W, K]` (the model's `out`).
    """
    return self._forward_with(self.variables, images_uint8)

  def _forward_with(self, variables, images_uint8):
    from jaxdet.data import preprocess
    images = preprocess.normalize_image(jnp.asarray(images_uint8),
                                        preprocess.of_model(self.config.get("model")))
    return self.model.apply(variables, images, train=False)["out"]

  def predict(self, images, probabilities: bool = False) -> dict[str, np.ndarray]:
    """Segments images of any size (the inputs of `jaxdet.predict_inputs`).

    An image that is not S x S is resized by the model's rule (top-left letterbox or stretch);
    the logits of its area are resized back to its pixels (bilinear, as torchvision's
    `F.interpolate(align_corners=False)`) before the argmax. An S x S image is used as it is:
    its mask is the argmax of `forward`, as in the exported ONNX graph.

    Args:
      images: uint8 RGB `[N, H, W, 3]` or one `[H, W, 3]` image, a PIL image, a path, or a list
        of these of mixed sizes.
      probabilities: also return the softmax of the logits.

    Returns:
      `{"masks": int32 [N, H, W]}` (+ `"probabilities"` float32 `[N, H, W, K]`); a list of
      images of different sizes gives lists of per-image arrays `[H_i, W_i]` instead.

    Raises:
      ValueError: an input is not an image (the message names it).
    """
    from jaxdet import predict_inputs
    from jaxdet.data import preprocess
    batch = predict_inputs.as_image_list(images)
    rule = preprocess.of_model(self.config.get("model")).resize
    inputs, scale, _ = predict_inputs.resize_batch(batch, self.image_size, rule)
    logits = np.asarray(jax.device_get(self._logits_jit(self.variables, inputs)), np.float32)
    masks, probs = [], []
    for image, row, (sx, sy) in zip(batch, logits, scale):
      h, w = image.shape[:2]
      if (h, w) != row.shape[:2]:
        # The image's area of the input: all of it (stretch), or its top-left corner (letterbox).
        nh, nw = ((self.image_size, self.image_size) if rule == "stretch" else
                  (max(1, min(self.image_size, round(h * sy))),
                   max(1, min(self.image_size, round(w * sx)))))
        row = resize_logits(row[:nh, :nw], (h, w))
      masks.append(np.argmax(row, -1).astype(np.int32))
      if probabilities:
        probs.append(np.asarray(jax.nn.softmax(row, -1), np.float32))
    same = len({m.shape for m in masks}) == 1
    stack = (lambda xs: np.stack(xs)) if same else list
    out = {"masks": stack(masks)}
    if probabilities:
      out["probabilities"] = stack(probs)
    return out


def resize_logits(logits, size):
  """`[h, w, K]` float32 -> `[H, W, K]`, bilinear with `align_corners=False` (NumPy)."""
  from jaxdet.models.layers import _bilinear_matrix  # pylint: disable=protected-access
  my = _bilinear_matrix(logits.shape[0], size[0])
  mx = _bilinear_matrix(logits.shape[1], size[1])
  return np.einsum("oh,pw,hwc->opc", my, mx, logits.astype(np.float32))


def build_segmenter(config: ml_collections.ConfigDict, variables: dict | None,
                    class_names) -> Segmenter:
  """A `Segmenter` from a config (`model.task == "segmentation"`) and variables (None: random
  init from `config.seed`); `class_names`: K names, background first."""
  from jaxdet.inference.load import model_variables
  from jaxdet.models import segmentation
  class_names = tuple(str(c) for c in class_names)
  model = segmentation.build(config.model, num_classes=len(class_names))
  return Segmenter(model=model, variables=model_variables(model, variables, config),
                   config=config, class_names=class_names, image_size=int(config.image_size))


def overlay(image_uint8, mask, alpha=0.5):
  """`[H, W, 3]` uint8: the mask's colours (VOC's palette) blended over the image where it is not
  background (0); `jaxdet.data.draw.overlay_mask`."""
  from jaxdet.data.draw import overlay_mask  # pylint: disable=g-import-not-at-top
  return overlay_mask(image_uint8, mask, alpha=alpha)
