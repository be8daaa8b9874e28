"""Darknet `.cfg` + `.weights` -> jaxdet (`jaxdet convert darknet`), and the reverse writer.

A `.weights` file is a header (int32 major, minor, revision, then `seen`: uint64 when
major*10 + minor >= 2, else int32) and float32 blobs in cfg order, for each `[convolutional]`:
biases (with `batch_normalize=1`: BN beta), [BN scale, rolling mean, rolling variance], then the
kernel as (filters, channels / groups, size, size). Nothing else in the standard cfgs has
weights. The cfg itself is parsed by `jaxdet.models.darknet_cfg` (the model needs it too; the
model package never imports the converters).

The converted folder's config holds the cfg text (`config.model.cfg_text`), so the folder is
self-contained: `jaxdet.load`, `jaxdet export`, `jaxdet train --workdir` read it like any workdir.
"""

import dataclasses
import os
import pathlib
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from jaxdet.convert.loader import ConversionError
from jaxdet.models import darknet_cfg as dc

# darknet's own test thresholds (`darknet detector test`: NMS 0.45); a low score threshold so
# that evaluation sees the whole precision-recall curve (predict's --conf filters drawings).
POSTPROCESS = {"score_threshold": 0.05, "iou_threshold": 0.45, "max_detections": 100,
               "pre_nms_top_k": 1000}


@dataclasses.dataclass(frozen=True)
class Header:
  major: int = 0
  minor: int = 2
  revision: int = 5
  seen: int = 0

  @property
  def nbytes(self) -> int:
    return 12 + (8 if self.major * 10 + self.minor >= 2 else 4)


def read_header(data: bytes) -> Header:
  """The version header of a `.weights` file's bytes (ConversionError when too short)."""
  if len(data) < 16:
    raise ConversionError(f"weights file of {len(data)} bytes is shorter than a darknet header")
  major, minor, revision = (int(v) for v in np.frombuffer(data[:12], "<i4"))
  if major * 10 + minor >= 2:
    if len(data) < 20:
      raise ConversionError(f"weights file of {len(data)} bytes is shorter than its header")
    seen = int(np.frombuffer(data[12:20], "<u8")[0])
  else:
    seen = int(np.frombuffer(data[12:16], "<i4")[0])
  return Header(major, minor, revision, seen)


def _conv_layers(plan: dc.Plan):
  return [(i, l) for i, l in enumerate(plan.layers) if isinstance(l, dc.Conv)]


def expected_bytes(plan: dc.Plan, header: Header = Header()) -> int:
  """Size of the `.weights` file of `plan` with `header`."""
  floats = sum(dc.conv_weight_count(l, dc.in_channels(plan, i)) for i, l in _conv_layers(plan))
  return header.nbytes + 4 * floats


def weights_to_variables(plan: dc.Plan, data: bytes) -> tuple[dict, Header]:
  """`({"params", "batch_stats"}, header)` of a `.weights` file's bytes for `plan`.

  Raises:
    ConversionError: the file's length differs from the cfg's (both byte counts named).
  """
  header = read_header(data)
  want = expected_bytes(plan, header)
  if len(data) != want:
    raise ConversionError(
        f"weights file has {len(data)} bytes but the cfg needs {want} ({header.nbytes} header + "
        f"{want - header.nbytes} weights for {len(_conv_layers(plan))} convolutions): "
        f"{'truncated, or' if len(data) < want else 'longer than expected, or'} for another cfg")
  values = np.frombuffer(data, "<f4", offset=header.nbytes)
  params, stats, pos = {}, {}, 0

  def take(n):
    nonlocal pos
    pos += n
    return np.array(values[pos - n:pos], np.float32)

  for i, layer in _conv_layers(plan):
    f, cin = layer.filters, dc.in_channels(plan, i) // layer.groups
    bias = take(f)
    if layer.batch_normalize:
      scale, mean, var = take(f), take(f), take(f)
      params[f"layer_{i}_bn"] = {"scale": scale, "bias": bias}
      stats[f"layer_{i}_bn"] = {"mean": mean, "var": var}
    kernel = take(f * cin * layer.size ** 2).reshape(f, cin, layer.size, layer.size)
    conv = {"kernel": kernel.transpose(2, 3, 1, 0)}  # OIHW -> HWIO
    if not layer.batch_normalize:
      conv["bias"] = bias
    params[f"layer_{i}_conv"] = conv
  return {"params": params, "batch_stats": stats}, header


def variables_to_weights(plan: dc.Plan, variables, header: Header = Header()) -> bytes:
  """The `.weights` bytes of jaxdet variables (the inverse of `weights_to_variables`)."""
  head = np.asarray([header.major, header.minor, header.revision], "<i4").tobytes()
  head += np.asarray([header.seen], "<u8" if header.nbytes == 20 else "<i4").tobytes()
  params, stats = variables["params"], variables.get("batch_stats", {})
  blobs = []
  for i, layer in _conv_layers(plan):
    conv = params[f"layer_{i}_conv"]
    if layer.batch_normalize:
      bn, st = params[f"layer_{i}_bn"], stats[f"layer_{i}_bn"]
      blobs += [bn["bias"], bn["scale"], st["mean"], st["var"]]
    else:
      blobs.append(conv["bias"])
    blobs.append(np.asarray(conv["kernel"]).transpose(3, 2, 0, 1))  # HWIO -> OIHW
  return head + b"".join(np.asarray(b, "<f4").tobytes() for b in blobs)


def family_of(plan: dc.Plan) -> str:
  """"yolov4" for cfgs with YOLOv4's traits (Mish, scale_x_y, iou_thresh), else "yolov3"."""
  v4 = any(isinstance(l, dc.Conv) and l.activation == "mish" for l in plan.layers) or any(
      isinstance(l, dc.Yolo) and (l.scale_x_y != 1.0 or l.iou_thresh < 1.0) for l in plan.layers)
  return "yolov4" if v4 else "yolov3"


def coco_names() -> tuple[str, ...]:
  """The 80 COCO class names in darknet's `coco.names` order."""
  from jaxdet.convert.torchvision_retinanet import COCO_CATEGORIES
  return tuple(n for n in COCO_CATEGORIES[1:] if n != "N/A")


def read_names(path, num_classes: int) -> tuple[str, ...]:
  """Class names of a darknet `.names` file (one a line); ConversionError on a count mismatch."""
  names = tuple(l.strip() for l in pathlib.Path(path).read_text().splitlines() if l.strip())
  if len(names) != num_classes:
    raise ConversionError(f"{path} lists {len(names)} class names but the cfg has "
                          f"{num_classes} classes")
  return names


def read_cfg_file(path) -> str:
  """The text of a darknet `.cfg` file (UTF-8).

  Raises:
    ConversionError: the file is binary (a NUL byte, which no cfg has and every `.weights` header
      has) or not UTF-8; the message names the file and suggests swapped arguments.
  """
  data = pathlib.Path(path).read_bytes()
  bad = data.find(b"\0")
  if bad < 0:
    try:
      return data.decode("utf-8")
    except UnicodeDecodeError as e:
      bad = e.start
  raise ConversionError(f"--cfg {path} is not a text file (binary or not UTF-8 at byte offset "
                        f"{bad}), so not a darknet .cfg: are --cfg and --weights swapped?")


def read_weights_file(path) -> bytes:
  """The bytes of a darknet `.weights` file.

  Raises:
    ConversionError: the file is text (no NUL byte in its first KiB: a `.weights` header starts
      with int32 versions, 0 0 0 0, 2 0 0 0, ...), which the length check would report only as
      a size mismatch; a cfg is named as such, with the swapped-arguments hint.
  """
  data = pathlib.Path(path).read_bytes()
  head = data[:1024]
  if head and b"\0" not in head:
    text = head.decode("utf-8", errors="replace")
    cfg = "[net]" in text or "[convolutional]" in text
    raise ConversionError(
        f"--weights {path} is a text file{' (a darknet cfg)' if cfg else ''}, not a darknet "
        f".weights file (binary)" + (": are --cfg and --weights swapped?" if cfg else ""))
  return data


def from_darknet(cfg_text: str, weights: bytes, *, image_size: int | None = None):
  """`(config, variables, header)` of a darknet network: a full training config (`model` = the
  `yolov3`/`yolov4` family holding `cfg_text`, `image_size`, darknet's postprocess), its
  `{"params", "batch_stats"}` (NumPy) and the weights file's `Header`.

  Raises:
    ConversionError: a cfg jaxdet cannot run (naming the section), an image size that is not a
      multiple of 32, weights of the wrong length (naming the byte counts).
  """
  from jaxdet import models
  from jaxdet.train import config as config_lib
  if image_size is not None and (image_size < 32 or image_size % 32):
    raise ConversionError(f"--image-size must be a positive multiple of 32, got {image_size}")
  try:
    p = dc.plan_text(cfg_text, image_size=image_size)
  except dc.CfgError as e:
    raise ConversionError(f"cfg: {e}") from None
  variables, header = weights_to_variables(p, weights)
  classes = {l.classes for l in p.layers if isinstance(l, dc.Yolo)}
  if len(classes) != 1:
    raise ConversionError(f"the cfg's [yolo] layers disagree on classes: {sorted(classes)}")
  config = config_lib.base_config()
  config.image_size = p.image_size
  config.model = models.default_config(family_of(p))
  config.model.cfg_text = cfg_text
  # OpenCV DNN's preprocessing (`blobFromImage(img, 1 / 255, (S, S), swapRB=True)`): the photo
  # stretched to S x S by `cv2.resize` (INTER_LINEAR, uint8), so a photo of any size gives
  # OpenCV's outputs.
  config.model.preprocess.interpolation = "opencv"
  config.postprocess.update(POSTPROCESS)
  _check_against_model(config, classes.pop(), variables)
  return config, variables, header


def _check_against_model(config, num_classes, variables):
  """The variables have exactly the model's structure and shapes (a converter bug otherwise)."""
  from jaxdet import models
  module = models.build(config.model, num_classes=num_classes)
  s = config.image_size
  abstract = jax.eval_shape(lambda: module.init(jax.random.key(0),
                                                jnp.zeros((1, s, s, 3), jnp.float32), train=False))
  want = jax.tree.map(lambda x: x.shape, abstract)
  got = jax.tree.map(np.shape, {"params": variables["params"],
                                "batch_stats": variables["batch_stats"]})
  if want != got:
    raise ConversionError("internal: converted variables do not match the model's")


def convert_file(cfg, weights, output, *, image_size: int | None = None, names=None,
                 overrides=()) -> pathlib.Path:
  """Converts a darknet cfg + weights pair into a checkpoint folder (`jaxdet convert darknet`).

  Nothing is written unless the whole conversion succeeds (the folder is assembled beside
  `output` and renamed into place).

  Args:
    cfg: `.cfg` path.
    weights: `.weights` path.
    output: folder to create (`config.json`, `checkpoints/latest/0`).
    image_size: square input S, a multiple of 32 (default: the cfg's `[net]` width).
    names: optional darknet `.names` file; default: COCO's names for 80 classes, else class0...
    overrides: `--config.KEY=VALUE` arguments.

  Returns:
    The step folder written.
  """
  from jaxdet.convert.checkpoint import write_checkpoint
  from jaxdet.train import config as config_lib
  cfg, weights, output = pathlib.Path(cfg), pathlib.Path(weights), pathlib.Path(output).absolute()
  if output.exists() and (not output.is_dir() or any(output.iterdir())):
    raise FileExistsError(f"{output} exists and is not an empty folder; choose a new --output")
  config, variables, header = from_darknet(read_cfg_file(cfg), read_weights_file(weights),
                                           image_size=image_size)
  num_classes = next(l.classes for l in dc.plan_text(config.model.cfg_text).layers
                     if isinstance(l, dc.Yolo))
  if names is not None:
    class_names = read_names(names, num_classes)
  else:
    class_names = coco_names() if num_classes == 80 else tuple(f"class{i}"
                                                               for i in range(num_classes))
  config.model.cfg = cfg.stem
  config = config_lib.apply_overrides(config, config_lib.parse_override_args(list(overrides)))
  source = {"framework": "darknet", "cfg": cfg.name, "weights": weights.name,
            "version": [header.major, header.minor, header.revision], "seen": header.seen}
  output.parent.mkdir(parents=True, exist_ok=True)
  staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
  umask = os.umask(0)
  os.umask(umask)
  staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would make the folder private
  try:
    step = write_checkpoint(staging, config, variables, class_names=class_names, source=source)
    if output.exists():
      output.rmdir()
    os.replace(staging, output)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return output / step.relative_to(staging)
