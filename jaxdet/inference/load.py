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

POSTPROCESS_KEYS = ("score_threshold", "iou_threshold", "max_detections", "pre_nms_top_k",
                    "pre_nms_top_k_per_level", "pre_nms_top_k_per_class")


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
    postprocess: `score_threshold`, `iou_threshold`, `max_detections`, `pre_nms_top_k`,
      `pre_nms_top_k_per_level`, `pre_nms_top_k_per_class` (missing keys:
      `jaxdet.models.postprocess.POSTPROCESS_DEFAULTS`).
  Normalization and resize rule: `config.model.preprocess` (`jaxdet.data.preprocess`).
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
    # One program per network input shape (the "rcnn" rule runs each image at its padded size).
    object.__setattr__(self, "_predict_jit", jax.jit(self._network_postprocess))

  @property
  def external_proposals(self) -> bool:
    """True for a Fast R-CNN model (`config.model.proposals == "external"`): `forward` and
    `predict` then need `proposals`."""
    return uses_external_proposals(self.config)

  @property
  def preprocess(self):
    """The model's resolved `jaxdet.data.preprocess.Preprocess` (normalization, resize rule)."""
    from jaxdet.data import preprocess
    return preprocess.of_model(self.config.get("model"))

  def forward(self, images_uint8, proposals=None, proposal_mask=None):
    """Normalize + model + decode, pure and jit-able (closes over `variables`).

    Args:
      images_uint8: `[N, S, S, 3]` uint8 images already resized by the model's rule.
      proposals: float32 `[N, P, 4]` xyxy in input pixels, for an `external_proposals` model
        only (the model checks the shapes).
      proposal_mask: optional bool `[N, P]` with `proposals`.

    Returns:
      `(boxes_xyxy [N, A, 4] float32 in input pixels, scores [N, A, C] float32 in [0, 1])`
      (`[N, P, C, 4]` class-specific boxes for a two-stage model).
    """
    from jaxdet.data import preprocess
    images = preprocess.normalize_image(jnp.asarray(images_uint8), self.preprocess)
    return self.forward_normalized(images, _proposal_targets(proposals, proposal_mask))

  def forward_normalized(self, images, targets=None):
    """Model + decode of normalized network inputs of any shape, pure and jit-able.

    Args:
      images: float32 `[N, H, W, 3]`, resized and normalized by the model's rule
        (`jaxdet.predict_inputs.network_inputs`; uint8 pixels are normalized first).
      targets: optional dict of inference inputs: `proposals` / `proposal_mask` (Fast R-CNN),
        `image_hw` int32 `[N, 2]` (each image's extent in a padded input, the "rcnn" rule:
        boxes are clipped to it).

    Returns:
      `(boxes_xyxy, scores)` as `forward`, in network-input pixels.
    """
    return self._network(self.variables, images, targets)

  def _network(self, variables, images, targets=None):
    if images.dtype == jnp.uint8:  # the uint8 rules: normalized here, as in the ONNX graph
      from jaxdet.data import preprocess
      images = preprocess.normalize_image(images, self.preprocess)
    extra = {} if targets is None else {"targets": targets}
    preds = self.model.apply(variables, images, train=False, **extra)
    return detector_module(self.config).decode(preds, image_size=_input_size(images))

  def _network_postprocess(self, variables, images, targets=None):
    from jaxdet.models.postprocess import postprocess
    boxes, scores = self._network(variables, images, targets)
    return postprocess(boxes, scores, **self.postprocess_args(_input_size(images)))

  def postprocess_args(self, image_size=None) -> dict:
    """`postprocess` keyword arguments: `self.postprocess` + `level_sizes` for the per-level
    option (what the exporter bakes into the graph too), for an input of `image_size` (S or
    (H, W); default the detector's S)."""
    from jaxdet.models.postprocess import postprocess_args
    return postprocess_args(self.postprocess, model_config=self.config.get("model"),
                            image_size=self.image_size if image_size is None else image_size)

  def predict(self, images, *, proposals=None, proposal_mask=None) -> dict[str, np.ndarray]:
    """Detects objects in images of any size (the same inputs as `jaxdet_export.Detector`).

    Each image is resized by the model's rule (`config.model.preprocess`: letterbox or stretch
    to S, or torchvision's min/max-size rule at the image's own padded size), normalized, run,
    and its boxes mapped back to its pixels. Images sharing a network input shape run as one
    batch; each new shape compiles once. The "rcnn" rule runs the images one by one (one
    program per padded size).

    Args:
      images: uint8 RGB `[N, H, W, 3]` or one `[H, W, 3]` image (N = 1), a PIL image, an image
        path (EXIF orientation applied), or a list of these of mixed sizes
        (`jaxdet.predict_inputs`).
      proposals: float32 `[N, P, 4]` xyxy in the pixels of `images`: the RoIs of a Fast R-CNN
        model (`external_proposals`), required for it and refused for any other; mapped through
        the images' resize. Rows with a non-finite coordinate are ignored. A new P compiles anew.
      proposal_mask: optional bool `[N, P]` (False: a padding row), with `proposals`.

    Returns:
      dict of NumPy arrays: `boxes` `[N, K, 4]` float32 xyxy in each image's pixels, `scores`
      `[N, K]` float32, `classes` `[N, K]` int32, `num_detections` `[N]` int32 (entries past it
      are 0).

    Raises:
      ValueError: an input is not an image; the message names what was passed. Missing
        `proposals` for a Fast R-CNN model, `proposals` for another model, or proposals of the
        wrong shape.
      FileNotFoundError: a path does not exist.
    """
    from jaxdet import predict_inputs
    predict_inputs.check_proposals_wanted(self.external_proposals, proposals, proposal_mask,
                                          self.config.model.get("name"))
    batch = predict_inputs.as_image_list(images)
    if proposals is not None:
      predict_inputs.proposals_to_inputs(proposals, proposal_mask, np.ones((len(batch), 2)),
                                         num_images=len(batch))  # checks the shapes
    results = [None] * len(batch)
    for group in predict_inputs.network_inputs(batch, self.image_size, self.preprocess):
      # The "rcnn" rule runs image by image, as torchvision does a batch of one: one program per
      # padded size, whatever the mix of sizes in a call.
      parts = predict_inputs.single_images(group) if self.preprocess.resize == "rcnn" else [group]
      for part in parts:
        out = self._predict_group(part, proposals, proposal_mask)
        for j, i in enumerate(part.indices):
          results[i] = {k: v[j] for k, v in out.items()}
    return {k: np.stack([r[k] for r in results]) for k in results[0]}

  def _predict_group(self, group, proposals, proposal_mask):
    """Detections of one `InputGroup`, boxes in its images' pixels."""
    from jaxdet import predict_inputs
    from jaxdet.data import preprocess
    pre = self.preprocess
    targets = {}
    if pre.resize == "rcnn":  # torchvision clips to each image's extent, not the padding
      targets["image_hw"] = jnp.asarray(group.image_hw)
    if proposals is not None:
      idx = group.indices
      mask = None if proposal_mask is None else np.asarray(proposal_mask)[idx]
      boxes, mask = predict_inputs.proposals_to_inputs(
          np.asarray(proposals)[idx], mask, group.scale, num_images=len(idx))
      targets.update(_proposal_targets(boxes, mask))
    out = jax.device_get(self._predict_jit(self.variables, jnp.asarray(group.images),
                                           targets or None))
    if preprocess.resizes_uint8(pre):  # jaxdet's own rules: divide by the scale, as before
      boxes = predict_inputs.boxes_to_images(out["boxes"], group.scale, group.limits,
                                             out["num_detections"])
    else:  # torchvision's models: times original / resized (`resize_boxes`)
      boxes = predict_inputs.boxes_to_image_pixels(out["boxes"], group.back, group.limits,
                                                   out["num_detections"])
    return {"boxes": boxes, "scores": np.asarray(out["scores"], np.float32),
            "classes": np.asarray(out["classes"], np.int32),
            "num_detections": np.asarray(out["num_detections"], np.int32)}


def _input_size(images):
  """S of a square network input (what families' `decode` and `level_sizes` were written for),
  else (H, W)."""
  h, w = images.shape[1:3]
  return int(h) if h == w else (int(h), int(w))


def uses_external_proposals(config) -> bool:
  """True when the model runs on supplied proposals (`faster_rcnn` with proposals="external")."""
  model = config.get("model") if config is not None else None
  return model is not None and model.get("proposals", "rpn") == "external"


def _proposal_targets(proposals, proposal_mask):
  if proposals is None:
    return None
  targets = {"proposals": jnp.asarray(proposals, jnp.float32)}
  if proposal_mask is not None:
    targets["proposal_mask"] = jnp.asarray(proposal_mask, bool)
  return targets


def postprocess_settings(config: ml_collections.ConfigDict) -> dict:
  """The `config.postprocess` settings as plain Python values (defaults for missing keys)."""
  from jaxdet.models.postprocess import postprocess_settings as settings
  return settings(config.get("postprocess"))


def model_variables(model, variables: dict | None, config) -> dict:
  """`{"params", "batch_stats"}` as JAX arrays; None: a random init from `config.seed` at
  `config.image_size`."""
  if variables is None:
    from jaxdet.train.state import init_variables
    variables = init_variables(model, jax.random.PRNGKey(int(config.get("seed", 0))),
                               image_size=int(config.image_size),
                               external_proposals=uses_external_proposals(config))
  return {"params": jax.tree.map(jnp.asarray, dict(variables["params"])),
          "batch_stats": jax.tree.map(jnp.asarray, dict(variables.get("batch_stats", {})))}


def check_servable(config: ml_collections.ConfigDict, path=None) -> None:
  """Refuses a config that `jaxdet.load` cannot serve, with a one-line reason.

  A folder from `jaxdet convert torchvision --arch resnet50` (model name `classifier`) holds an
  ImageNet classifier meant as a detector's backbone; without this check it fails deep in the
  model registry ("unknown model 'classifier'"), which reads as a broken folder.

  Args:
    config: a resolved config (its `model` block is read).
    path: the folder the config came from, named in the message (None: "this config").

  Raises:
    ValueError: the config is a converted classifier's.
  """
  model = config.get("model")
  if model is None or model.get("name") != "classifier":
    return
  arch = model.get("backbone") or "?"
  raise ValueError(
      f"{path or 'this config'} holds an image classifier ({arch}) converted for use as a "
      f"detector's backbone (jaxdet train --config.model.backbone={arch} "
      f"--config.init_from.checkpoint={path or 'DIR'} ...); jaxdet.load serves detectors and "
      f"segmentation models: classification inference is not supported yet")


def build_detector(config: ml_collections.ConfigDict, variables: dict | None,
                   class_names) -> Detector:
  """Builds a `Detector` from a config and variables.

  Args:
    config: a training config (`model`, `image_size`, `postprocess`).
    variables: `{"params", "batch_stats"}`; None initializes randomly from `config.seed`.
    class_names: sequence of str, one per class.

  Returns:
    A `Detector` (a `jaxdet.inference.segment.Segmenter` for a segmentation config).

  Raises:
    ValueError: empty `class_names`, or a converted classifier's config (`check_servable`).
  """
  from jaxdet import models
  from jaxdet.models import segmentation
  check_servable(config)
  if segmentation.is_segmentation(config.get("model")):
    from jaxdet.inference.segment import build_segmenter
    return build_segmenter(config, variables, class_names)
  class_names = tuple(str(c) for c in class_names)
  if not class_names:
    raise ValueError("class_names must not be empty")
  model = models.build(config.model, num_classes=len(class_names))
  size = int(config.image_size)
  variables = model_variables(model, variables, config)
  return Detector(model=model, variables=variables, config=config, class_names=class_names,
                  image_size=size, postprocess=postprocess_settings(config))


def load(path: str | pathlib.Path) -> Detector:
  """Loads a trained detector (or segmentation model: a `Segmenter`, see
  `jaxdet.inference.segment`).

  Args:
    path: a workdir (its best checkpoint by val AP, else its latest), a `checkpoints/best` or
      `checkpoints/latest` folder, or one checkpoint step folder.

  Returns:
    A `Detector`.

  Raises:
    FileNotFoundError: no checkpoint under `path`.
    ValueError: the checkpoint metadata is incomplete or corrupt, or it holds a converted image
      classifier (`jaxdet convert torchvision --arch resnet50`), which is not served.
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
  check_servable(config, _folder_name(path, step_dir))
  return build_detector(config, variables, meta["class_names"])


def _folder_name(path, step_dir: pathlib.Path) -> str:
  """The workdir holding `step_dir` (`W/checkpoints/{best,latest}/N` -> W), as the user wrote it
  when `path` is that workdir: what `--config.init_from.checkpoint` and messages should name."""
  folder = step_dir.parents[2] if step_dir.parent.parent.name == "checkpoints" else step_dir
  return str(path) if pathlib.Path(path).absolute() == folder else str(folder)
