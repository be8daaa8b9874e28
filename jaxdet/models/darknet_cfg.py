"""Darknet `.cfg` network files: parsing and shape planning (pure Python, no JAX).

A cfg is a list of `[section]` headers with `key=value` lines. `parse_cfg` reads it into
`Section`s; `plan(sections, image_size=S, num_classes=C)` checks it and returns the typed layers
(`Conv`, `Route`, `Shortcut`, `Upsample`, `MaxPool`, `Yolo`) with their output shapes, which the
Flax module of `jaxdet.models.darknet` runs and the weights reader of `jaxdet.convert.darknet`
fills. Layer i of the plan is darknet's layer i (the `[net]` section is not a layer), so `route
layers=23` and the order of the `.weights` blobs refer to it directly.

Semantics follow darknet (AlexeyAB) and OpenCV's Darknet reader: conv padding `size // 2` when
`pad=1` (else `padding`), maxpool padding `size - 1` split `floor / ceil` (so stride-2 pools
halve even maps and stride-1 pools keep the size), route `groups`/`group_id` take one channel
group of each input, leaky slope 0.1.
"""

import dataclasses
import importlib.resources

SUPPORTED = ("net", "convolutional", "route", "shortcut", "upsample", "maxpool", "yolo")
ACTIVATIONS = ("linear", "leaky", "relu", "logistic", "mish", "swish", "tanh")
# Section names darknet accepts as aliases.
_ALIASES = {"conv": "convolutional", "network": "net", "max": "maxpool"}


class CfgError(ValueError):
  """A cfg that jaxdet cannot run; the message names the section (and its line)."""


@dataclasses.dataclass(frozen=True)
class Section:
  kind: str
  options: tuple[tuple[str, str], ...]
  line: int  # 1-based line of the `[kind]` header

  def get(self, key, default=None):
    return dict(self.options).get(key, default)

  def where(self, index=None) -> str:
    what = f"[{self.kind}]" if index is None else f"layer {index} [{self.kind}]"
    return f"{what} (line {self.line})"


@dataclasses.dataclass(frozen=True)
class Conv:
  filters: int
  size: int
  stride: int
  pad: int
  groups: int
  batch_normalize: bool
  activation: str


@dataclasses.dataclass(frozen=True)
class Route:
  layers: tuple[int, ...]  # absolute layer indices
  groups: int = 1
  group_id: int = 0


@dataclasses.dataclass(frozen=True)
class Shortcut:
  source: int  # absolute layer index added to the previous layer
  activation: str = "linear"


@dataclasses.dataclass(frozen=True)
class Upsample:
  stride: int


@dataclasses.dataclass(frozen=True)
class MaxPool:
  size: int
  stride: int
  pad_before: int
  pad_after: int  # as many as the output size needs (<= padding - pad_before)


@dataclasses.dataclass(frozen=True)
class Yolo:
  anchors: tuple[tuple[float, float], ...]  # the masked anchors (w, h) in input pixels
  all_anchors: tuple[tuple[float, float], ...]  # every anchor of the section
  mask: tuple[int, ...]
  classes: int
  scale_x_y: float = 1.0
  ignore_thresh: float = 0.5
  iou_thresh: float = 1.0  # > 1 - tiny: only the best anchor (darknet's default)
  stride: int = 32  # input pixels per grid cell


@dataclasses.dataclass(frozen=True)
class Plan:
  """A checked network: `layers[i]` is darknet layer i, `shapes[i]` its (h, w, c) output."""
  layers: tuple
  shapes: tuple[tuple[int, int, int], ...]
  image_size: int
  in_channels: int
  net: Section

  @property
  def yolo_indices(self) -> tuple[int, ...]:
    return tuple(i for i, l in enumerate(self.layers) if isinstance(l, Yolo))


def builtin_names() -> tuple[str, ...]:
  """Names of the cfg files shipped in `jaxdet/models/darknet_cfgs/` (without `.cfg`)."""
  root = importlib.resources.files("jaxdet.models") / "darknet_cfgs"
  return tuple(sorted(p.name[:-4] for p in root.iterdir() if p.name.endswith(".cfg")))


def builtin_text(name: str) -> str:
  """The text of a built-in cfg (`"yolov4-tiny"`); ValueError naming the known ones."""
  if name not in builtin_names():
    raise CfgError(f"unknown darknet cfg {name!r}; built-in: {', '.join(builtin_names())} "
                   "(or set config.model.cfg_text to a cfg file's text)")
  return (importlib.resources.files("jaxdet.models") / "darknet_cfgs" / f"{name}.cfg").read_text()


def parse_cfg(text: str) -> list[Section]:
  """Sections of a cfg text, in order; `#`/`;` comments and blank lines skipped.

  Raises:
    CfgError: an option outside a section, a line without `=`, or an unsupported section
      (named with its line).
  """
  sections, current, options = [], None, []
  for number, raw in enumerate(text.splitlines(), 1):
    line = raw.split("#", 1)[0].split(";", 1)[0].strip()
    if not line:
      continue
    if line.startswith("["):
      if current is not None:
        sections.append(Section(current[0], tuple(options), current[1]))
      kind = line.strip("[] \t").lower()
      kind = _ALIASES.get(kind, kind)
      if kind not in SUPPORTED:
        raise CfgError(f"unsupported darknet section [{kind}] at line {number}; jaxdet supports "
                       f"{', '.join(f'[{k}]' for k in SUPPORTED)}")
      current, options = (kind, number), []
    elif current is None:
      raise CfgError(f"line {number}: {raw.strip()!r} is outside any [section]")
    else:
      if "=" not in line:
        raise CfgError(f"line {number}: expected key=value, got {raw.strip()!r}")
      key, value = (s.strip() for s in line.split("=", 1))
      options.append((key, value))
  if current is not None:
    sections.append(Section(current[0], tuple(options), current[1]))
  if not sections or sections[0].kind != "net":
    raise CfgError("a darknet cfg must start with a [net] section")
  return sections


def _ints(value: str) -> tuple[int, ...]:
  return tuple(int(v) for v in value.split(",") if v.strip())


def _floats(value: str) -> tuple[float, ...]:
  return tuple(float(v) for v in value.split(",") if v.strip())


def _number(section, key, default, kind=int, index=None):
  value = section.get(key)
  if value is None:
    return default
  try:
    return kind(float(value)) if kind is int else kind(value)
  except ValueError:
    raise CfgError(f"{section.where(index)}: {key}={value!r} is not a number") from None


def _activation(section, index):
  act = section.get("activation", "logistic" if section.kind == "convolutional" else "linear")
  if act not in ACTIVATIONS:
    raise CfgError(f"{section.where(index)}: unsupported activation {act!r}; expected one of "
                   f"{', '.join(ACTIVATIONS)}")
  return act


def _absolute(section, index, ref):
  target = index + ref if ref < 0 else ref
  if not 0 <= target < index:
    raise CfgError(f"{section.where(index)}: refers to layer {ref} (absolute {target}), which is "
                   f"not an earlier layer")
  return target


def set_num_classes(sections: list[Section], num_classes: int) -> list[Section]:
  """The sections with every `[yolo]` set to `num_classes` classes and the convolution before it
  to `len(mask) * (num_classes + 5)` filters (how darknet users retrain a cfg)."""
  out = list(sections)
  for i, s in enumerate(out):
    if s.kind != "yolo":
      continue
    prev = i - 1
    if out[prev].kind != "convolutional":
      raise CfgError(f"{s.where()}: the section before a [yolo] must be [convolutional]")
    mask = _ints(s.get("mask", "")) or tuple(range(_number(s, "num", 1)))
    out[i] = _replace(s, classes=str(num_classes))
    out[prev] = _replace(out[prev], filters=str(len(mask) * (num_classes + 5)))
  return out


def set_anchors(sections: list[Section], anchors: str) -> list[Section]:
  """The sections with every `[yolo]`'s `anchors=` replaced (e.g. k-means anchors of a dataset;
  same count as before, in input pixels)."""
  out = []
  for s in sections:
    if s.kind == "yolo":
      old, new = _floats(s.get("anchors", "")), _floats(anchors)
      if len(new) != len(old):
        raise CfgError(f"{s.where()}: has {len(old) // 2} anchors, the replacement "
                       f"{anchors!r} {len(new) // 2}")
      s = _replace(s, anchors=anchors)
    out.append(s)
  return out


def scale_width(sections: list[Section], width: float) -> list[Section]:
  """The sections with the filters of every `[convolutional]` not followed by a `[yolo]` scaled
  by `width` (rounded to a multiple of 8, at least 8): a narrower network for small CPUs."""
  out = list(sections)
  for i, s in enumerate(out):
    if s.kind != "convolutional" or (i + 1 < len(out) and out[i + 1].kind == "yolo"):
      continue
    filters = _number(s, "filters", 1)
    out[i] = _replace(s, filters=str(max(8, int(round(filters * width / 8)) * 8)))
  return out


def _replace(section, **values):
  opts = dict(section.options)
  opts.update(values)
  return dataclasses.replace(section, options=tuple(opts.items()))


def plan(sections: list[Section], *, image_size: int | None = None,
         num_classes: int | None = None) -> Plan:
  """Typed layers and output shapes of a parsed cfg at a square input.

  Args:
    sections: `parse_cfg` output (first one `[net]`).
    image_size: square input S (default: the `[net]` width, which must equal its height).
    num_classes: if given, the `[yolo]` classes and the filters before them are set to it.

  Returns:
    `Plan`.

  Raises:
    CfgError: naming the layer: bad references, mismatched filters before a `[yolo]`, shapes that
      do not line up (route/shortcut of different sizes), no `[yolo]` layer.
  """
  if num_classes is not None:
    sections = set_num_classes(sections, num_classes)
  net, body = sections[0], sections[1:]
  if image_size is None:
    w, h = _number(net, "width", 416), _number(net, "height", 416)
    if w != h:
      raise CfgError(f"[net] width={w} and height={h} differ; jaxdet runs square inputs: pass an "
                     "image size")
    image_size = w
  c_in = _number(net, "channels", 3)
  layers, shapes = [], []
  h, w, c = image_size, image_size, c_in
  for i, s in enumerate(body):
    if s.kind == "net":
      raise CfgError(f"{s.where(i)}: a second [net] section")
    if s.kind == "convolutional":
      size, stride = _number(s, "size", 1, index=i), _number(s, "stride", 1, index=i)
      pad = size // 2 if _number(s, "pad", 0, index=i) else _number(s, "padding", 0, index=i)
      groups = _number(s, "groups", 1, index=i)
      filters = _number(s, "filters", 1, index=i)
      if c % groups or filters % groups:
        raise CfgError(f"{s.where(i)}: groups={groups} does not divide {c} input / {filters} "
                       "output channels")
      layer = Conv(filters, size, stride, pad, groups, bool(_number(s, "batch_normalize", 0)),
                   _activation(s, i))
      h, w, c = (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1, filters
    elif s.kind == "route":
      refs = _ints(s.get("layers", ""))
      if not refs:
        raise CfgError(f"{s.where(i)}: needs layers=")
      srcs = tuple(_absolute(s, i, r) for r in refs)
      groups, gid = _number(s, "groups", 1, index=i), _number(s, "group_id", 0, index=i)
      sizes = {shapes[j][:2] for j in srcs}
      if len(sizes) != 1:
        raise CfgError(f"{s.where(i)}: routes layers of different sizes {sorted(sizes)}")
      if any(shapes[j][2] % groups for j in srcs) or not 0 <= gid < groups:
        raise CfgError(f"{s.where(i)}: groups={groups}, group_id={gid} do not split its inputs")
      layer = Route(srcs, groups, gid)
      (h, w), c = sizes.pop(), sum(shapes[j][2] // groups for j in srcs)
    elif s.kind == "shortcut":
      refs = _ints(s.get("from", ""))
      if len(refs) != 1:
        raise CfgError(f"{s.where(i)}: jaxdet supports one `from` layer, got {s.get('from')!r}")
      src = _absolute(s, i, refs[0])
      if s.get("weights_type", "none") != "none":
        raise CfgError(f"{s.where(i)}: weighted shortcuts (weights_type) are not supported")
      if shapes[src] != (h, w, c):
        raise CfgError(f"{s.where(i)}: adds layer {src} of shape {shapes[src]} to {(h, w, c)}")
      layer = Shortcut(src, _activation(s, i))
    elif s.kind == "upsample":
      stride = _number(s, "stride", 2, index=i)
      if stride < 1 or _number(s, "scale", 1.0, float, index=i) != 1.0:
        raise CfgError(f"{s.where(i)}: only integer upsampling (stride >= 1, scale=1) is supported")
      layer = Upsample(stride)
      h, w = h * stride, w * stride
    elif s.kind == "maxpool":
      size = _number(s, "size", 1, index=i)
      stride = _number(s, "stride", size, index=i)
      padding = _number(s, "padding", size - 1, index=i)
      out = (h + padding - size) // stride + 1
      before = padding // 2
      if h != w:
        raise CfgError(f"{s.where(i)}: non-square maps are not supported")
      layer = MaxPool(size, stride, before, max(0, (out - 1) * stride + size - h - before))
      h = w = out
    else:  # yolo
      layer = _yolo(s, i, body[i - 1] if i else None, layers[-1] if layers else None, c,
                    image_size // h if h else 0)
    if h < 1 or w < 1:
      raise CfgError(f"{s.where(i)}: the map is empty at input size {image_size}")
    layers.append(layer)
    shapes.append((h, w, c))
  if not any(isinstance(l, Yolo) for l in layers):
    raise CfgError("the cfg has no [yolo] layer")
  return Plan(tuple(layers), tuple(shapes), image_size, c_in, net)


def _yolo(s, i, prev_section, prev_layer, channels, stride):
  anchors = _floats(s.get("anchors", ""))
  if not anchors or len(anchors) % 2:
    raise CfgError(f"{s.where(i)}: anchors= needs pairs of numbers")
  pairs = tuple(zip(anchors[0::2], anchors[1::2]))
  num = _number(s, "num", len(pairs), index=i)
  mask = _ints(s.get("mask", "")) or tuple(range(num))
  if any(not 0 <= m < len(pairs) for m in mask):
    raise CfgError(f"{s.where(i)}: mask {mask} indexes outside its {len(pairs)} anchors")
  classes = _number(s, "classes", 20, index=i)
  want = len(mask) * (classes + 5)
  if not isinstance(prev_layer, Conv) or channels != want:
    raise CfgError(f"{s.where(i)}: the layer before it must be a [convolutional] with "
                   f"filters={want} (= {len(mask)} anchors x ({classes} classes + 5)), got "
                   f"{channels} channels" + (f" from {prev_section.where(i - 1)}"
                                             if prev_section is not None else ""))
  if s.get("new_coords", "0") != "0":
    raise CfgError(f"{s.where(i)}: new_coords=1 (scaled-YOLOv4 decoding) is not supported")
  return Yolo(anchors=tuple(pairs[m] for m in mask), all_anchors=pairs, mask=mask,
              classes=classes, scale_x_y=_number(s, "scale_x_y", 1.0, float, index=i),
              ignore_thresh=_number(s, "ignore_thresh", 0.5, float, index=i),
              iou_thresh=_number(s, "iou_thresh", 1.0, float, index=i), stride=stride)


def plan_text(text: str, *, image_size=None, num_classes=None) -> Plan:
  """`plan(parse_cfg(text), ...)`."""
  return plan(parse_cfg(text), image_size=image_size, num_classes=num_classes)


def conv_weight_count(layer: Conv, in_channels: int) -> int:
  """float32 values of one `[convolutional]` in a `.weights` file: biases (+ BN scale, mean,
  variance), then the kernel."""
  per_filter = 4 if layer.batch_normalize else 1
  return layer.filters * per_filter + layer.filters * (in_channels // layer.groups) * layer.size ** 2


def in_channels(p: Plan, index: int) -> int:
  """Input channels of layer `index` (the previous layer's output, or the image's)."""
  return p.shapes[index - 1][2] if index else p.in_channels




def to_text(sections: list[Section], *, image_size: int | None = None) -> str:
  """Cfg text of `sections` (comments dropped); `image_size` sets the `[net]` width and height."""
  lines = []
  for s in sections:
    opts = dict(s.options)
    if s.kind == "net" and image_size is not None:
      opts.update(width=str(image_size), height=str(image_size))
    lines.append(f"[{s.kind}]")
    lines += [f"{k}={v}" for k, v in opts.items()]
    lines.append("")
  return "\n".join(lines)
