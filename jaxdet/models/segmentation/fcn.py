"""FCN (Long, Shelhamer & Darrell 2015): fully convolutional networks for semantic segmentation.

Two bodies, chosen by `config.backbone`:
- `vgg16` (or `vgg16_bn`, with BatchNorm): the paper's FCN-32s / 16s / 8s (`config.variant`). VGG-16's fc6/fc7 become a 7x7 and
  a 1x1 convolution, `score_*` 1x1 layers (zero-initialized, as the paper's net surgery) score
  pool5 (through fc7), pool4 and pool3; transposed convolutions (kernel 2f, stride f, no bias,
  initialized to bilinear interpolation on the class diagonal) upsample by 2 and fuse by sum with
  the next skip, then by 8, 16 or 32 to the input. Crops align the maps: every map carries the
  input coordinate of its first pixel (`_Grid`), so the paper's Caffe offsets (5, 9, 31 with the
  first conv padded by 100: `paper_padding`) follow from the layer arithmetic instead of being
  constants. Without `paper_padding` the first conv pads by 1 and fc6 by 3, and the input is
  zero-padded to a multiple of 32 (cheaper at small sizes; same crops, computed).
- `resnet50` / `resnet101` (or any Bottleneck depth): torchvision's `fcn_resnet50/101`: ResNet
  with layer3/layer4 dilated (output stride 8), `FCNHead` (3x3 conv to in/4 channels, BN, ReLU,
  dropout 0.1, 1x1 conv to K) on layer4, optionally an auxiliary `FCNHead` on layer3 (`aux`),
  both upsampled to the input by bilinear interpolation (`F.interpolate(align_corners=False)`).

Loss: pixel-wise softmax cross-entropy, pixels of value 255 ignored, mean over the others, plus
`aux_weight` x the auxiliary head's (torchvision's reference recipe uses 0.5).
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdet import losses
from jaxdet.models.backbones.resnet import ResNet
from jaxdet.models.backbones.vgg import VGG
from jaxdet.models.conv import Conv
from jaxdet.models.layers import ConvBN, conv_padding, max_pool, resize_bilinear

name = "fcn"  # registered name: this file's name and `config.model.name`

IGNORE_INDEX = 255
VARIANTS = ("32s", "16s", "8s")


def default_config() -> ml_collections.ConfigDict:
  """Default `config.model` of FCN: torchvision's `fcn_resnet50` (with the auxiliary head)."""
  c = ml_collections.ConfigDict()
  c.name = name
  c.task = "segmentation"
  # "vgg16" (the paper's FCN), "vgg16_bn" (its BatchNorm variant: trains from scratch), or
  # "resnet50" | "resnet101" | "resnet152" (torchvision's fcn_resnet*)
  c.backbone = "resnet50"
  c.frozen_bn = False
  c.backbone_width = 64  # ResNet first-stage channels (64 standard)
  c.aux = True  # ResNet: auxiliary FCNHead on layer3 (torchvision `aux_loss=True`)
  c.aux_weight = 0.5
  c.head_dropout = 0.1  # ResNet FCNHead dropout
  # VGG (the paper's FCN):
  c.variant = "8s"  # "32s" | "16s" | "8s"
  c.width_divisor = 1  # every VGG conv width divided by this (small models)
  c.fc_width = 4096  # channels of the conv-ized fc6 / fc7
  c.fc_dropout = 0.5
  c.paper_padding = True  # first conv padded by 100 and fc6 unpadded, as the Caffe nets
  c.learn_upsampling = True  # False keeps the transposed convs at bilinear (Caffe's lr_mult 0)
  return c


def test_config() -> ml_collections.ConfigDict:
  """A tiny FCN-ResNet (the torchvision path: dilation, FCNHead, aux head, bilinear resize)."""
  c = default_config()
  c.update(backbone_width=8)
  return c


def vgg_test_config() -> ml_collections.ConfigDict:
  """A tiny FCN-8s on VGG-16 (the paper path: skips, crops, transposed convs)."""
  c = default_config()
  c.update(backbone="vgg16", variant="8s", width_divisor=16, fc_width=32, paper_padding=False)
  return c


def bilinear_kernel(kernel_size: int, num_classes: int) -> np.ndarray:
  """`[k, k, K, K]` float32 HWIO kernel of a transposed conv doing bilinear upsampling by
  `(k + 1) // 2` per class (zero off the class diagonal), as FCN's net surgery."""
  factor = (kernel_size + 1) // 2
  center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
  og = np.arange(kernel_size, dtype=np.float64)
  filt1 = 1 - np.abs(og - center) / factor
  filt = np.outer(filt1, filt1).astype(np.float32)
  kernel = np.zeros((kernel_size, kernel_size, num_classes, num_classes), np.float32)
  kernel[:, :, np.arange(num_classes), np.arange(num_classes)] = filt[:, :, None]
  return kernel


@dataclasses.dataclass(frozen=True)
class _Grid:
  """Where a feature map sits on the input: pixel i of the map is at input coordinate
  `offset + stride * i` (the centre of its receptive field)."""
  stride: float
  offset: float

  def conv(self, kernel, padding):
    return _Grid(self.stride, self.offset + self.stride * ((kernel - 1) / 2 - padding))

  def pool2(self):  # 2x2 stride-2 max-pool
    return _Grid(self.stride * 2, self.offset + self.stride * 0.5)

  def up(self, kernel, factor):  # transposed conv, no padding: output (n - 1) * f + k
    return _Grid(self.stride / factor, self.offset - self.stride / factor * (kernel - 1) / 2)


def _aligned(a, grid_a, b, grid_b):
  """`a` and `b` (`[B,h,w,K]`, same stride) cropped to the input area both cover, pixel for
  pixel: `(a', b', grid)`."""
  s = grid_a.stride
  start = max(grid_a.offset, grid_b.offset)
  sizes = []
  for axis in (1, 2):
    end = min(grid_a.offset + s * (a.shape[axis] - 1), grid_b.offset + s * (b.shape[axis] - 1))
    sizes.append(int(round((end - start) / s)) + 1)
  ca, cb = (start - grid_a.offset) / s, (start - grid_b.offset) / s
  if ca != int(ca) or cb != int(cb) or min(sizes) < 1:
    raise ValueError(f"FCN maps do not align: offsets {grid_a.offset}, {grid_b.offset}, "
                     f"stride {s}")
  ca, cb = int(ca), int(cb)
  crop = lambda x, c: x[:, c:c + sizes[0], c:c + sizes[1]]
  return crop(a, ca), crop(b, cb), _Grid(s, start)


class Upsample(nn.Module):
  """Transposed conv (kernel 2f, stride f, no padding, no bias) initialized to bilinear, as
  Caffe's Deconvolution: `[B,h,w,K] -> [B,(h-1)f+2f,(w-1)f+2f,K]`. Written as a conv over the
  f-dilated input (the same arithmetic; ONNX export makes it a ConvTranspose)."""
  factor: int
  learn: bool = True

  @nn.compact
  def __call__(self, x):
    k, num = 2 * self.factor, x.shape[-1]
    kernel = self.param("kernel", lambda key, shape: jnp.asarray(bilinear_kernel(k, num)),
                        (k, k, num, num))
    if not self.learn:
      kernel = jax.lax.stop_gradient(kernel)
    # A transposed conv is a conv of the dilated input with the flipped kernel.
    return jax.lax.conv_general_dilated(
        x, kernel[::-1, ::-1], window_strides=(1, 1), padding=((k - 1, k - 1),) * 2,
        lhs_dilation=(self.factor, self.factor), dimension_numbers=("NHWC", "HWIO", "NHWC"))


class FCNVGG(nn.Module):
  """The paper's FCN-32s/16s/8s on VGG-16. See the module docstring.

  `__call__(images float32 [B,H,W,3], *, train)` -> `{"out": logits float32 [B,H,W,K]}`.
  """
  num_classes: int
  variant: str = "8s"
  width_divisor: int = 1
  fc_width: int = 4096
  fc_dropout: float = 0.5
  paper_padding: bool = True
  learn_upsampling: bool = True
  use_bn: bool = False
  frozen_bn: bool = False

  @nn.compact
  def __call__(self, images, *, train=False, targets=None):
    del targets
    if self.variant not in VARIANTS:
      raise ValueError(f"FCN variant must be one of {VARIANTS}, got {self.variant!r}")
    k = self.num_classes
    h, w = images.shape[1:3]
    x = images
    if not self.paper_padding:  # same-padded net: a multiple of 32 keeps every crop inside
      x = jnp.pad(x, ((0, 0), (0, -h % 32), (0, -w % 32), (0, 0)))
    first_padding = 100 if self.paper_padding else 1
    feats = VGG(depth=16, use_bn=self.use_bn, frozen_bn=self.frozen_bn,
                width_divisor=self.width_divisor, first_padding=first_padding,
                name="backbone")(x, train=train)
    grid = _Grid(1.0, 0.0).conv(3, first_padding)  # after conv1_1; later convs keep it
    grids = {}
    for s in (2, 4, 8, 16, 32):
      grid = grid.pool2()
      grids[s] = grid
    pool3 = max_pool(feats["c2"], window=2, stride=2, padding=0)
    pool4 = max_pool(feats["c3"], window=2, stride=2, padding=0)
    fc6_padding = 0 if self.paper_padding else 3
    drop = lambda y: nn.Dropout(self.fc_dropout, deterministic=not train)(y)
    y = nn.relu(Conv(self.fc_width, (7, 7), padding=((fc6_padding,) * 2,) * 2, name="fc6")(
        feats["c5"]))
    y = drop(nn.relu(Conv(self.fc_width, (1, 1), name="fc7")(drop(y))))
    score = lambda z, n: Conv(k, (1, 1), kernel_init=nn.initializers.zeros, name=n)(z)
    y, grid = score(y, "score_fr"), grids[32].conv(7, fc6_padding)
    skips = {"32s": (), "16s": ((pool4, 16, "pool4"),),
             "8s": ((pool4, 16, "pool4"), (pool3, 8, "pool3"))}[self.variant]
    for skip, stride, skip_name in skips:
      y = Upsample(2, self.learn_upsampling, name=f"upscore_{stride * 2}to{stride}")(y)
      grid = grid.up(4, 2)
      y, s, grid = _aligned(y, grid, score(skip, f"score_{skip_name}"), grids[stride])
      y = y + s
    factor = int(grid.stride)
    y = Upsample(factor, self.learn_upsampling, name=f"upscore_{factor}")(y)
    grid = grid.up(2 * factor, factor)
    crop = -grid.offset
    if crop != int(crop) or crop < 0 or y.shape[1] < crop + h or y.shape[2] < crop + w:
      raise ValueError(f"FCN output {y.shape[1:3]} at offset {grid.offset} does not cover the "
                       f"{h}x{w} input")
    crop = int(crop)
    return {"out": y[:, crop:crop + h, crop:crop + w]}


class FCNHead(nn.Module):
  """torchvision's FCNHead: 3x3 conv (no bias) to in/4 channels, BN, ReLU, dropout, 1x1 conv.

  `[B,h,w,Cin] -> [B,h,w,num_classes]` float32.
  """
  num_classes: int
  dropout: float = 0.1

  @nn.compact
  def __call__(self, x, *, train=False):
    x = ConvBN(x.shape[-1] // 4, 3, 1, nn.relu, name="conv0")(x, train=train)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return Conv(self.num_classes, (1, 1), name="out")(x)


class FCNResNet(nn.Module):
  """torchvision's `fcn_resnet*`: dilated ResNet (output stride 8) + FCNHead (+ aux head).

  `__call__(images float32 [B,H,W,3], *, train)` -> `{"out": [B,H,W,K], "aux": [B,H,W,K]}`
  float32 logits (`aux` only with `aux=True`).
  """
  num_classes: int
  depth: int = 50
  width: int = 64
  frozen_bn: bool = False
  aux: bool = True
  head_dropout: float = 0.1

  @nn.compact
  def __call__(self, images, *, train=False, targets=None):
    del targets
    size = images.shape[1:3]
    feats = ResNet(depth=self.depth, frozen_bn=self.frozen_bn, width=self.width,
                   replace_stride_with_dilation=(False, True, True), name="backbone")(
                       images, train=train)
    head = lambda n: FCNHead(self.num_classes, self.head_dropout, name=n)
    out = {"out": resize_bilinear(head("head")(feats["c5"], train=train), size)}
    if self.aux:
      out["aux"] = resize_bilinear(head("aux_head")(feats["c4"], train=train), size)
    return out


def build(config, *, num_classes: int) -> nn.Module:
  """The FCN of `config` (`config.model`) for K = `num_classes` classes (background included)."""
  backbone = config.get("backbone", "resnet50")
  if backbone in ("vgg16", "vgg16_bn"):
    return FCNVGG(use_bn=backbone == "vgg16_bn", frozen_bn=config.get("frozen_bn", False),
                  num_classes=num_classes, variant=config.get("variant", "8s"),
                  width_divisor=config.get("width_divisor", 1),
                  fc_width=config.get("fc_width", 4096), fc_dropout=config.get("fc_dropout", 0.5),
                  paper_padding=config.get("paper_padding", True),
                  learn_upsampling=config.get("learn_upsampling", True))
  if backbone in ("resnet50", "resnet101", "resnet152"):
    return FCNResNet(num_classes=num_classes, depth=int(backbone[6:]),
                     width=config.get("backbone_width", 64),
                     frozen_bn=config.get("frozen_bn", False), aux=config.get("aux", True),
                     head_dropout=config.get("head_dropout", 0.1))
  raise ValueError(f"FCN backbone must be 'vgg16', 'vgg16_bn', 'resnet50', 'resnet101' or "
                   f"'resnet152', got {backbone!r}")


def pixel_cross_entropy(logits, mask):
  """Mean softmax cross-entropy over the pixels whose label is not 255.

  Args:
    logits: float32 `[B,H,W,K]`.
    mask: int `[B,H,W]` class ids in [0, K) or 255 (ignored; so is any other id outside [0, K)).

  Returns:
    float32 `[]`, 0 when every pixel is ignored.
  """
  mask = jnp.asarray(mask, jnp.int32)
  valid = (mask >= 0) & (mask < logits.shape[-1])
  ce = losses.softmax_cross_entropy(logits.astype(jnp.float32), jnp.where(valid, mask, 0))
  return losses.masked_mean(ce, valid)


def loss_fn(preds, batch, *, config):
  """`(loss [], metrics)`: CE of `out` + `aux_weight` x CE of `aux` (when present) against
  `batch["mask"]` int32 `[B,H,W]` (255 ignored); metrics `loss`, `ce_out`, `ce_aux`,
  `pixel_accuracy` (over non-ignored pixels)."""
  mask = jnp.asarray(batch["mask"], jnp.int32)
  ce_out = pixel_cross_entropy(preds["out"], mask)
  metrics = {"ce_out": ce_out}
  loss = ce_out
  if "aux" in preds:
    ce_aux = pixel_cross_entropy(preds["aux"], mask)
    loss = loss + config.get("aux_weight", 0.5) * ce_aux
    metrics["ce_aux"] = ce_aux
  valid = (mask >= 0) & (mask < preds["out"].shape[-1])
  correct = (jnp.argmax(preds["out"], -1) == mask) & valid
  metrics["pixel_accuracy"] = losses.masked_mean(correct.astype(jnp.float32), valid)
  metrics["loss"] = loss
  return loss, metrics
