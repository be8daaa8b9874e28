"""`jaxdet.load(path) -> Detector`: a trained detector from a workdir or checkpoint, for inference.

Loading reads only JSON (config, class names) and Orbax array data: it never executes Python from
the workdir and never unpickles.
"""

import dataclasses
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdet.train import checkpoint as ckpt
from jaxdet.train import config as config_lib

POSTPROCESS_KEYS = ("score_threshold", "iou_threshold", "max_detections", "pre_nms_top_k")


def detector_module(config: ml_collections.ConfigDict):
  """The `jaxdet.models.<config.model.name>` module (defines `loss_fn` and `decode`)."""
  from jaxdet import models
  return models.get_detector(config.model.name)


@dataclasses.dataclass(frozen=True)
class Detector:
  """A detector ready for inference (what the exporter reads).

  Attributes:
    model: the Linen module.
    variables: `{"params", "batch_stats"}` (EMA params when trained with EMA).
    config: the resolved training config.
    class_names: class names indexed by class id.
    image_size: S, the square network input size.
    postprocess: `score_threshold`, `iou_threshold`, `max_detections`, `pre_nms_top_k`.
  """
  model: Any
  variables: dict
  config: ml_collections.ConfigDict
  class_names: tuple[str, ...]
  image_size: int
  postprocess: dict
  _predict_jit: Callable = dataclasses.field(init=False, repr=False, compare=False)

  def __post_init__(self):
    # Variables are a jit argument, not closed-over constants, so XLA does not fold big weights.
    object.__setattr__(self, "_predict_jit", jax.jit(self._forward_postprocess))

  def forward(self, images_uint8):
    """Normalize + model + decode, pure and jit-able (closes over `variables`).

    Args:
      images_uint8: `[N, S, S, 3]` uint8 letterboxed images.

    Returns:
      `(boxes_xyxy [N, A, 4] float32 in input pixels, scores [N, A, C] float32 in [0, 1])`.
    """
    return self._forward_with(self.variables, images_uint8)

  def _forward_with(self, variables, images_uint8):
    from jaxdet.data.preprocess import normalize_image
    images = normalize_image(jnp.asarray(images_uint8))
    preds = self.model.apply(variables, images, train=False)
    return detector_module(self.config).decode(preds, image_size=self.image_size)

  def _forward_postprocess(self, variables, images_uint8):
    from jaxdet.models import postprocess
    boxes, scores = self._forward_with(variables, images_uint8)
    return postprocess(boxes, scores, **self.postprocess)

  def predict(self, images) -> dict[str, np.ndarray]:
    """Detects objects in a batch of images of any size.

    Images whose size is not S x S are letterboxed (top-left, `jaxdet.data.preprocess`) and the
    boxes mapped back to their pixels.

    Args:
      images: `[N, H, W, 3]` uint8 (or a single `[H, W, 3]` image, treated as N = 1).

    Returns:
      dict of NumPy arrays: `boxes` `[N, K, 4]` float32 xyxy in input pixels, `scores` `[N, K]`
      float32, `classes` `[N, K]` int32, `num_detections` `[N]` int32 (entries past it are 0).

    Raises:
      ValueError: images are not `[N, H, W, 3]` uint8 with N, H, W > 0.
    """
    from jaxdet.data.preprocess import letterbox_image
    images = np.asarray(images)
    if images.ndim == 3:
      images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3 or min(images.shape[:3]) == 0:
      raise ValueError(f"images must be uint8 [N, H, W, 3] with N, H, W > 0, got {images.shape}")
    if images.dtype != np.uint8:
      raise ValueError(f"images must be uint8, got {images.dtype}")
    n, h, w, _ = images.shape
    size = self.image_size
    if (h, w) == (size, size):
      inputs, scale = images, np.ones((n, 2), np.float32)
    else:
      boxed = [letterbox_image(im, size) for im in images]
      inputs = np.stack([b[0] for b in boxed])
      scale = np.asarray([b[1] for b in boxed], np.float32)
    out = jax.device_get(self._predict_jit(self.variables, inputs))
    valid = np.arange(out["boxes"].shape[1])[None, :] < out["num_detections"][:, None]
    boxes = out["boxes"] / np.concatenate([scale, scale], axis=1)[:, None, :]
    boxes = np.clip(boxes, 0., np.array([w, h, w, h], np.float32))
    return {"boxes": np.where(valid[..., None], boxes, 0.).astype(np.float32),
            "scores": np.asarray(out["scores"], np.float32),
            "classes": np.asarray(out["classes"], np.int32),
            "num_detections": np.asarray(out["num_detections"], np.int32)}


def postprocess_settings(config: ml_collections.ConfigDict) -> dict:
  """The four `config.postprocess` settings as plain Python numbers."""
  pp = config.postprocess
  return {"score_threshold": float(pp.score_threshold), "iou_threshold": float(pp.iou_threshold),
          "max_detections": int(pp.max_detections), "pre_nms_top_k": int(pp.pre_nms_top_k)}


def build_detector(config: ml_collections.ConfigDict, variables: dict | None,
                   class_names) -> Detector:
  """Builds a `Detector` from a config and variables.

  Args:
    config: a training config (`model`, `image_size`, `postprocess`).
    variables: `{"params", "batch_stats"}`; None initializes randomly from `config.seed`.
    class_names: sequence of str, one per class.

  Returns:
    A `Detector`.
  """
  from jaxdet import models
  class_names = tuple(str(c) for c in class_names)
  if not class_names:
    raise ValueError("class_names must not be empty")
  model = models.build(config.model, num_classes=len(class_names))
  size = int(config.image_size)
  if variables is None:
    # Jitted init: eager init of a CSP-Darknet dispatches thousands of small ops (~10x slower).
    variables = jax.jit(lambda key: model.init(key, jnp.zeros((1, size, size, 3), jnp.float32),
                                               train=False))(
                                                   jax.random.PRNGKey(int(config.get("seed", 0))))
  variables = {"params": jax.tree.map(jnp.asarray, dict(variables["params"])),
               "batch_stats": jax.tree.map(jnp.asarray, dict(variables.get("batch_stats", {})))}
  return Detector(model=model, variables=variables, config=config, class_names=class_names,
                  image_size=size, postprocess=postprocess_settings(config))


def load(path: str | pathlib.Path) -> Detector:
  """Loads a trained detector.

  Args:
    path: a workdir (its best checkpoint by val AP, else its latest), a `checkpoints/best` or
      `checkpoints/latest` folder, or one checkpoint step folder.

  Returns:
    A `Detector`.

  Raises:
    FileNotFoundError: no checkpoint under `path`.
    ValueError: the checkpoint metadata is incomplete or corrupt.
  """
  step_dir = ckpt.find_step_dir(path)
  try:
    variables, meta = ckpt.read_step_dir(step_dir)
  except Exception as e:  # Orbax raises many types for truncated or foreign folders.
    raise ValueError(f"cannot read checkpoint {step_dir}: {type(e).__name__}: {e}") from e
  missing = [k for k in ("config", "class_names") if k not in (meta or {})]
  if missing:
    raise ValueError(f"checkpoint {step_dir} metadata lacks {missing}")
  config = config_lib.from_json(meta["config"])
  return build_detector(config, variables, meta["class_names"])
