"""`jaxdet convert torchvision --arch ARCH --weights FILE --output DIR [--image-size S]
[--config.KEY=VALUE ...]` and `jaxdet convert darknet --cfg F.cfg --weights F.weights --output DIR
[--image-size S] [--names F.names]`."""

import os
import sys
import time

from jaxdet.train import config as config_lib
from jaxdet.train.cli import _OverridesParser


def register(subparsers) -> None:
  """Adds the `convert` subcommand (and its `torchvision` and `darknet` sources)."""
  parser = subparsers.add_parser(
      "convert", help="convert torchvision or Darknet weights to a checkpoint folder",
      description="Convert torchvision or Darknet weights to a checkpoint folder, with a "
                  "training workdir's layout.")
  sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
  tv = sources.add_parser(
      "torchvision", help="a torchvision state dict (.pth or .safetensors)",
      description="Convert a torchvision state dict. Overrides: --config.KEY=VALUE, e.g. "
                  "--config.postprocess.score_threshold=0.001.")
  tv.add_argument("--arch", required=True, help="torchvision architecture, e.g. resnet50")
  tv.add_argument("--weights", required=True, help=".pth (needs torch) or .safetensors file")
  tv.add_argument("--output", required=True, help="checkpoint folder to create")
  tv.add_argument("--image-size", type=int, default=None,
                  help="the model's input size S: classifiers 224 by default, ssd300_vgg16 300, "
                       "fcn_resnet* 520; the R-CNN family and RetinaNet resize as torchvision "
                       "(min_size 800, max_size 1333), and S sets both to S")
  tv.add_argument("--min-size", type=int, default=None,
                  help="R-CNN family and RetinaNet: torchvision's min_size (default 800)")
  tv.add_argument("--max-size", type=int, default=None,
                  help="R-CNN family and RetinaNet: torchvision's max_size (default 1333)")
  tv.__class__ = _OverridesParser
  tv.set_defaults(func=_run)
  dn = sources.add_parser(
      "darknet", help="a Darknet .cfg + .weights pair (YOLOv3, YOLOv4 and their tiny/SPP cfgs)",
      description="Convert a Darknet network (cfg + weights) into a yolov3/yolov4 folder.")
  dn.add_argument("--cfg", required=True, help="darknet .cfg file")
  dn.add_argument("--weights", required=True, help="darknet .weights file")
  dn.add_argument("--output", required=True, help="checkpoint folder to create")
  dn.add_argument("--image-size", type=int, default=None,
                  help="square input size S, a multiple of 32 (default: the cfg's [net] width)")
  dn.add_argument("--names", default=None,
                  help="darknet .names file (default: COCO names for 80 classes, else class0..)")
  dn.__class__ = _OverridesParser
  dn.set_defaults(func=_run_darknet)


def _run_darknet(args) -> int:
  from jaxdet.convert import darknet
  return _convert(f"{args.cfg} + {args.weights}", lambda: darknet.convert_file(
      args.cfg, args.weights, args.output, image_size=args.image_size, names=args.names,
      overrides=list(args.config_overrides)),
                  (darknet.ConversionError, config_lib.ConfigError, OSError))


def _run(args) -> int:
  from jaxdet.convert import torchvision as tv_convert
  return _convert(f"{args.arch} from {args.weights}", lambda: tv_convert.convert_file(
      args.arch, args.weights, args.output, image_size=args.image_size, min_size=args.min_size,
      max_size=args.max_size, overrides=list(args.config_overrides)),
                  (tv_convert.ConversionError, config_lib.ConfigError, FileNotFoundError,
                   FileExistsError))


def _convert(what, convert, expected) -> int:
  """Runs `convert()` (it returns the step folder written): exit status 0, or 1 with one line
  for an `expected` error and for any other (its traceback with JAXDET_DEBUG=1)."""
  try:
    start = time.perf_counter()
    step_dir = convert()
  except expected as e:
    print(f"jaxdet convert: error: {e}", file=sys.stderr)
    return 1
  except Exception as e:  # pylint: disable=broad-except
    if os.environ.get("JAXDET_DEBUG"):
      raise
    print(f"jaxdet convert: error: {type(e).__name__}: {e} (set JAXDET_DEBUG=1 for the "
          f"traceback)", file=sys.stderr)
    return 1
  print(f"converted {what} in {time.perf_counter() - start:.1f} s: {step_dir}")
  return 0
