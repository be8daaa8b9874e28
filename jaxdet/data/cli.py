"""``jaxdet data {build,import,show,stats,anchors,proposals}``: prepare, import, look at and
summarize datasets, cluster their boxes into anchors, and write Fast R-CNN proposals files."""

import sys
import time

import numpy as np


def _error(msg):
  print(f"jaxdet data: error: {msg}", file=sys.stderr)
  return 1


def _quiet_tfds():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  import absl.logging  # pylint: disable=g-import-not-at-top
  absl.logging.set_verbosity(absl.logging.ERROR)


def _build(args):
  from jaxdet.data import shapes  # pylint: disable=g-import-not-at-top
  name, _, config = args.name.partition("/")
  if name != "shapes":
    return _error(f"only the embedded `shapes` dataset can be built (got {args.name!r}); use "
                  f"`jaxdet data import` for your own data")
  config = config or args.config
  start = time.perf_counter()
  b = shapes.build(config, data_dir=args.data_dir)
  sizes = {k: v.num_examples for k, v in b.info.splits.items()}
  print(f"shapes/{config}: {sizes} in {b.data_dir} ({time.perf_counter() - start:.1f} s)")
  return 0


def _import(args):
  from jaxdet.data import importers  # pylint: disable=g-import-not-at-top
  from jaxdet.data.importers import common  # pylint: disable=g-import-not-at-top
  ratios = common.parse_split_ratios(args.split_ratios) if args.split_ratios else None
  classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
  report = importers.import_data(
      args.format, images=args.images, annotations=args.annotations, name=args.name,
      data_dir=args.data_dir, split=args.split, split_ratios=ratios, classes=classes,
      on_error=args.on_error, overwrite=args.overwrite, masks=args.masks)
  masks = (f"; masks: {report['num_mask_out_of_range']} pixel(s) outside the classes set to 255"
           if args.masks else "")
  print(f"imported {args.name}: {report['num_examples']} -> {report['path']}; "
        f"skipped {report['num_skipped']} bad image(s); clipped {report['num_clipped']} box(es) "
        f"partly outside their image{masks}")
  return 0


def _show(args):
  from jaxdet.data import draw  # pylint: disable=g-import-not-at-top
  from jaxdet.data import preprocess  # pylint: disable=g-import-not-at-top
  from jaxdet.data import sources  # pylint: disable=g-import-not-at-top
  from jaxdet.data import tfds_maps  # pylint: disable=g-import-not-at-top
  source, b = sources.open_split(args.name, args.split, args.data_dir)
  names = sources.class_names(b)
  with_masks = sources.has_masks(b)  # drawn as a colour overlay under the boxes
  overlay = lambda image, mask: draw.overlay_mask(image, mask) if with_masks else image
  images = []
  if args.augmented:
    from jaxdet.data import pipeline  # pylint: disable=g-import-not-at-top
    it = pipeline.input_pipeline(args.name, args.split, batch_size=args.num, image_size=args.size,
                                 max_boxes=100, train=True, seed=args.seed, data_dir=args.data_dir,
                                 augment=args.augment, shard_index=0, shard_count=1,
                                 masks=with_masks)
    batch = next(iter(it))
    pixels = batch["image"] * np.float32(preprocess.STD_RGB) + np.float32(preprocess.MEAN_RGB)
    for i in range(len(pixels)):
      image = np.clip(np.round(pixels[i]), 0, 255).astype(np.uint8)
      images.append(draw.draw_detections(overlay(image, batch.get("mask", [None] * len(pixels))[i]),
                                         batch["boxes"][i], batch["classes"][i],
                                         class_names=names, mask=batch["box_mask"][i]))
  else:
    for i in range(min(args.num, len(source))):
      ex = sources.record_to_example(tfds_maps.to_jaxdet_record(source[i], i), drop_crowd=False,
                                     masks=with_masks)
      images.append(draw.draw_detections(overlay(ex["image"], ex.get("mask")), ex["boxes"],
                                         ex["classes"], class_names=names))
  if not images:
    return _error(f"{args.name}:{args.split} is empty")
  draw.save_grid(images, args.out)
  print(f"wrote {len(images)} images to {args.out}")
  return 0


def _stats(args):
  from jaxdet.data import ground_truth  # pylint: disable=g-import-not-at-top
  from jaxdet.data import sources  # pylint: disable=g-import-not-at-top
  b = sources.builder(args.name, args.data_dir)
  splits = [args.split] if args.split else sorted(b.info.splits)
  names = sources.class_names(b)
  for split in splits:
    gt = ground_truth.coco_ground_truth(args.name, split, args.data_dir)
    print(format_stats(f"{args.name}:{split}", gt, names))
    if sources.has_masks(b):
      counts = np.zeros(256, np.int64)
      for ex in ground_truth.mask_examples(args.name, split, args.data_dir):
        counts += np.bincount(ex["mask"].reshape(-1), minlength=256)
      print(format_mask_stats(counts, names))
  return 0


def format_mask_stats(counts, class_names):
  """Text lines: the fraction of mask pixels per class id (0 background, k + 1 class k, 255
  ignore, other values counted as such) from ``counts`` ``[256]`` int."""
  from jaxdet.eval.report import pad  # pylint: disable=g-import-not-at-top
  total = max(int(counts.sum()), 1)
  names = {0: "background", 255: "ignore (255)"}
  names.update({k + 1: str(n) for k, n in enumerate(class_names)})
  lines = [f"  mask pixels per class ({int(counts.sum())} pixels):"]
  for v in np.flatnonzero(counts):
    name = names.get(int(v), f"id {v} (no class)")
    lines.append(f"    {pad(name, 16, right=True)} {100 * counts[v] / total:6.2f} %")
  return "\n".join(lines)


def _anchors(args):
  from jaxdet.data import anchors  # pylint: disable=g-import-not-at-top
  from jaxdet.data import ground_truth  # pylint: disable=g-import-not-at-top
  if args.image_size <= 0:
    raise ValueError(f"--image-size must be positive, got {args.image_size}")
  gt = ground_truth.coco_ground_truth(args.name, args.split, args.data_dir)
  wh = anchors.input_box_wh(gt, args.image_size, args.resize)
  if len(wh) < args.num:
    raise ValueError(f"{args.name}:{args.split} has {len(wh)} boxes, fewer than --num "
                     f"{args.num} anchors")
  found, mean_iou = anchors.kmeans_anchors(wh, k=args.num, seed=args.seed)
  # Everything is computed before the first line is printed: an error leaves no output.
  print(f"{args.name}:{args.split}: {len(wh)} boxes at {args.image_size} px ({args.resize}), "
        f"k-means (1 - IoU), {args.num} anchors, seed {args.seed}")
  print("  anchor       w       h")
  for i, (w, h) in enumerate(found):
    print(f"  {i:6d} {w:7.1f} {h:7.1f}")
  print(f"mean best IoU: {mean_iou:.4f}")
  print(anchors.config_line(found))
  return 0


def _proposals(args):
  from jaxdet.data import proposals  # pylint: disable=g-import-not-at-top
  checkpoint = int(args.checkpoint) if args.checkpoint.isdigit() else args.checkpoint
  ids, boxes = proposals.detector_proposals(args.workdir, args.split, top=args.top,
                                            checkpoint=checkpoint, data_dir=args.data_dir,
                                            min_score=args.min_score)
  proposals.write_proposals(args.output, ids, boxes)
  counts = [len(b) for b in boxes]
  print(f"{args.output}: {len(ids)} images, {sum(counts)} proposals "
        f"({min(counts, default=0)}..{max(counts, default=0)} per image)")
  return 0


def format_stats(title, gt, class_names):
  """Text summary of a COCO ground-truth dict: per-class counts, boxes/image, sizes."""
  from jaxdet.eval.report import pad  # pylint: disable=g-import-not-at-top
  anns = gt["annotations"]
  n_img = len(gt["images"])
  per_image = np.bincount(
      np.searchsorted(sorted(im["id"] for im in gt["images"]), [a["image_id"] for a in anns]),
      minlength=n_img) if anns else np.zeros(n_img, int)
  per_class = np.bincount([a["category_id"] for a in anns], minlength=len(class_names))
  areas = np.array([a["area"] for a in anns], np.float64)
  lines = [f"{title}: {n_img} images, {len(anns)} boxes "
           f"({sum(a['iscrowd'] for a in anns)} crowd, {sum(a['difficult'] for a in anns)} "
           f"difficult)"]
  lines.append("  boxes per class:")
  for name, count in zip(class_names, per_class):
    lines.append(f"    {pad(name, 16, right=True)} {count:7d}")
  if n_img:
    lines.append(f"  boxes per image: min {per_image.min()}, mean {per_image.mean():.2f}, "
                 f"max {per_image.max()}, images without boxes {(per_image == 0).sum()}")
    hist = np.bincount(np.minimum(per_image, 20), minlength=21)
    lines.append("  histogram (0..19, 20+): " + " ".join(str(int(c)) for c in hist))
    sizes = np.array([[im["height"], im["width"]] for im in gt["images"]])
    lines.append(f"  image size (h x w): min {sizes.min(0).tolist()}, max {sizes.max(0).tolist()}")
  if len(areas):
    small, large = (areas < 32**2).sum(), (areas >= 96**2).sum()
    lines.append(f"  box sizes (COCO area): small {small}, medium {len(areas) - small - large}, "
                 f"large {large}; sqrt(area) p5/p50/p95 "
                 f"{np.percentile(np.sqrt(areas), [5, 50, 95]).round(1).tolist()}")
  return "\n".join(lines)


def _action(sub, name, *, help):  # pylint: disable=redefined-builtin  (argparse's keyword)
  """Adds `jaxdet data NAME`: its one-line help also opens its own `--help` page."""
  return sub.add_parser(name, help=help, description=f"{help[0].upper()}{help[1:]}.")


def register(subparsers):
  """Adds the ``data`` subcommand and its sub-subcommands to ``jaxdet``'s parser."""
  parser = subparsers.add_parser(
      "data", help="build, import, show and summarize datasets",
      description="Build, import, show and summarize datasets (TFDS, in --data-dir or TFDS's "
                  "default folder).")
  sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

  p = _action(sub, "build", help="prepare the embedded `shapes` dataset")
  p.add_argument("name", help="shapes, shapes/small or shapes/tiny")
  p.add_argument("--config", default="default", help="shapes config when NAME has none")
  p.add_argument("--data-dir", default=None, help="TFDS data dir")
  p.set_defaults(func=_guarded(_build))

  p = _action(sub, "import", help="convert COCO / VOC / YOLO / KITTI data to a TFDS dataset")
  p.add_argument("--format", required=True, choices=("coco", "voc", "yolo", "kitti"))
  p.add_argument("--images", required=True, help="folder of images")
  p.add_argument("--annotations", required=True,
                 help="COCO json file, or VOC Annotations / YOLO / KITTI label folder")
  p.add_argument("--name", required=True, help="dataset name (lower case, digits, _)")
  p.add_argument("--data-dir", required=True, help="TFDS data dir to write into")
  p.add_argument("--split", default="train",
                 help="split name when the data is not already split and --split-ratios is not "
                      "given")
  p.add_argument("--split-ratios", default=None,
                 help="train,validation,test ratios summing to 1, e.g. 0.8,0.1,0.1 (not with "
                      "already-split data, which keeps its splits)")
  p.add_argument("--classes", default=None, help="comma-separated class names (order = ids)")
  p.add_argument("--on-error", default="skip", choices=("skip", "fail"),
                 help="skip bad images and report the count, or stop at the first")
  p.add_argument("--masks", action="store_true",
                 help="also import semantic masks (voc: SegmentationClass PNGs; coco: instance "
                      "polygons/RLE rasterized with pycocotools)")
  p.add_argument("--overwrite", action="store_true",
                 help="replace an existing dataset of the same --name (it is removed only once "
                      "the new one is written)")
  p.set_defaults(func=_guarded(_import))

  p = _action(sub, "show", help="draw a grid of images with their boxes and class names (and "
                                "masks as a colour overlay, when the dataset has them)")
  p.add_argument("name")
  p.add_argument("--split", default="train")
  p.add_argument("--out", required=True, help="output PNG")
  p.add_argument("--num", type=int, default=16, help="number of images")
  p.add_argument("--data-dir", default=None)
  p.add_argument("--augmented", action="store_true", help="show training batches (augmented)")
  p.add_argument("--augment", default="default",
                 help="augment preset with --augmented: none, default, full, ssd, mosaic")
  p.add_argument("--size", type=int, default=256, help="image size with --augmented")
  p.add_argument("--seed", type=int, default=0)
  p.set_defaults(func=_guarded(_show))

  p = _action(sub, "stats", help="class counts, boxes per image and box sizes")
  p.add_argument("name")
  p.add_argument("--split", default=None, help="one split (default: all)")
  p.add_argument("--data-dir", default=None)
  p.set_defaults(func=_guarded(_stats))

  p = _action(sub, "proposals", help="a proposals file (for Fast R-CNN, config.proposals_file) "
                                     "from a trained detector's detections on a split")
  p.add_argument("--workdir", required=True, help="training workdir of any jaxdet detector")
  p.add_argument("--split", required=True, help="split of its dataset, e.g. train")
  p.add_argument("--output", required=True, help="output .npz (see jaxdet.data.proposals)")
  p.add_argument("--top", type=int, default=300, help="most proposals per image")
  p.add_argument("--checkpoint", default="best", help="best, latest or a step number")
  p.add_argument("--data-dir", default=None, help="TFDS data dir (default: the run's)")
  p.add_argument("--min-score", type=float, default=0.0, help="lowest detection score kept")
  p.set_defaults(func=_guarded(_proposals))

  p = _action(sub, "anchors", help="k-means anchors (1 - IoU distance) from a split's boxes")
  p.add_argument("name")
  p.add_argument("--num", type=int, default=9, help="number of anchors")
  p.add_argument("--image-size", type=int, default=416,
                 help="network input side S: boxes are measured after the model's resize to S")
  p.add_argument("--resize", default="letterbox", choices=("letterbox", "stretch"),
                 help="the model's resize rule (config.model.preprocess.resize)")
  p.add_argument("--split", default="train")
  p.add_argument("--data-dir", default=None)
  p.add_argument("--seed", type=int, default=0)
  p.set_defaults(func=_guarded(_anchors))
  return parser


def _guarded(fn):
  """Runs a command; any error becomes one line on stderr and exit code 1 (no traceback)."""
  def run(args):
    try:
      _quiet_tfds()
      return fn(args)
    except KeyboardInterrupt:
      return _error("interrupted")
    except Exception as e:  # pylint: disable=broad-except
      msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      return _error(msg if isinstance(e, (ValueError, OSError)) else f"{type(e).__name__}: {msg}")
  return run


