"""`jaxdet predict`: run a detector on images (files, folders, globs) or a TFDS split, draw it and
write its detections (JSON, COCO results, YOLO txt)."""

import json
import pathlib
import sys

import numpy as np

from . import cli_common

_COMMAND = "predict"
DEFAULT_CONF = 0.25  # as Ultralytics: the models' own threshold (0.01..0.05) is for mAP, not eyes


class _WorkdirModel:
  """A training workdir served by `jaxdet.load` (JAX), with the ONNX `Detector`'s interface."""

  def __init__(self, path):
    import jaxdet  # pylint: disable=g-import-not-at-top
    from jaxdet.train import checkpoint  # pylint: disable=g-import-not-at-top
    self.step_dir = checkpoint.find_step_dir(path)
    self._detector = jaxdet.load(self.step_dir)
    self.class_names = self._detector.class_names
    self.task = getattr(self._detector, "task", "detection")
    self.score_threshold = getattr(self._detector, "postprocess", {}).get("score_threshold")
    self.include_nms = True

  def predict(self, images):
    return self._detector.predict(images)


class _OnnxModel:
  def __init__(self, path):
    from . import runtime  # pylint: disable=g-import-not-at-top
    from . import segmentation  # pylint: disable=g-import-not-at-top
    self.task, self.include_nms = "detection", True
    try:
      self._detector = runtime.Detector(path)
    except ValueError as e:
      if "not a jaxdet ONNX export" not in str(e):
        raise
      self._detector = segmentation.Segmenter(path)  # raises if it is none either
      self.task = segmentation.TASK
    self.class_names = self._detector.class_names
    if self.task == "detection":
      self.score_threshold = self._detector.metadata.score_threshold
      self.include_nms = self._detector.metadata.include_nms

  def predict(self, images):
    return self._detector.predict(images)


def _open_model(text):
  from . import predict_files  # pylint: disable=g-import-not-at-top
  if predict_files.is_url(text):
    raise ValueError(f"--model: URLs are not supported (no network access): {text}; download "
                     f"the file and pass its path")
  path = pathlib.Path(text)
  if path.is_dir():
    model = _WorkdirModel(path)
    step = f"{model.step_dir.parent.name}/{model.step_dir.name}"
    print(f"--model {text} is a workdir: predicting with its checkpoint {step} in JAX (for an ONNX file: jaxdet export --workdir {text} "
          f"--output model.onnx)", file=sys.stderr)
    return model
  return _OnnxModel(path)


def _dataset_images(dataset, split, num_images, data_dir):
  """`[(InputImage, image uint8 [H, W, 3])]` of the first `num_images` examples of a split."""
  from jaxdet.data import sources  # pylint: disable=g-import-not-at-top
  from jaxdet.data import tfds_maps  # pylint: disable=g-import-not-at-top
  from . import predict_files  # pylint: disable=g-import-not-at-top
  source, _ = sources.open_split(dataset, split, data_dir)
  out = []
  for i in range(min(num_images, len(source))):
    example = sources.record_to_example(tfds_maps.to_jaxdet_record(source[i], i))
    out.append((predict_files.InputImage(path=None, name=f"{split}_{i:05d}",
                                         image_id=int(example["image_id"])), example["image"]))
  if not out:
    raise ValueError(f"{dataset}:{split} has no examples")
  return out


def _file_images(args):
  """`[InputImage]` of the inputs, and a generator of `(InputImage, image)` of the readable ones
  (reporting or raising on the others)."""
  from jaxdet import predict_inputs  # pylint: disable=g-import-not-at-top
  from . import predict_files  # pylint: disable=g-import-not-at-top
  files, problems = predict_files.expand_inputs(args.images)
  for text, reason in problems:
    _problem(args, f"{text}: {reason}")
  items = predict_files.name_inputs(files)

  def read():
    for item in items:
      try:
        image = predict_inputs.read_image(item.path)
      except (OSError, ValueError) as e:
        _problem(args, str(e))
        continue
      yield item, image
  return items, read()


def _problem(args, message):
  if args.on_error == "fail":
    raise ValueError(f"{message} (--on-error skip goes on without it)")
  print(f"jaxdet {_COMMAND}: skipped: {message}", file=sys.stderr)


def _batches(items, size):
  batch = []
  for item in items:
    batch.append(item)
    if len(batch) == size:
      yield batch
      batch = []
  if batch:
    yield batch


def _record(item, image, boxes, scores, classes, class_names):
  return {"image": item.name, "path": None if item.path is None else str(item.path),
          "image_id": item.image_id, "height": int(image.shape[0]), "width": int(image.shape[1]),
          "detections": [{"box_xyxy": [round(float(v), 2) for v in b], "score": float(s),
                          "class_id": int(c), "class_name": class_names[int(c)]}
                         for b, s, c in zip(boxes, scores, classes)]}


def _predict(args):
  from jaxdet.data import draw  # pylint: disable=g-import-not-at-top
  from . import predict_files  # pylint: disable=g-import-not-at-top
  from . import predict_formats  # pylint: disable=g-import-not-at-top

  if bool(args.images) == bool(args.dataset):
    return cli_common.error(_COMMAND, "give images (files, folders or globs) or --dataset (not "
                                      "both, not neither)")
  if args.coco_gt and args.format != "coco":
    return cli_common.error(_COMMAND, "--coco-gt is for --format coco")
  if args.images:
    predict_files.expand_inputs(args.images)  # refuses URLs before the model loads
  model = _open_model(args.model)
  if not model.include_nms:
    return cli_common.error(_COMMAND, f"{args.model} was exported with --no-nms (raw boxes and "
                                      f"scores); predict needs an export with NMS")
  if args.dataset:
    named = _dataset_images(args.dataset, args.split, args.num_images, args.data_dir)
    items, images = [item for item, _ in named], iter(named)
  else:
    items, images = _file_images(args)
  # Unique over all inputs (`a/x.jpg`, `b/x.jpg`, `a/x.png` -> a/x_jpg.png, b/x.png, a/x_png.png).
  outputs = dict(zip((i.name for i in items),
                     predict_files.output_names([i.name for i in items], "")))
  out_dir = pathlib.Path(args.out)
  if getattr(model, "task", "detection") == "segmentation":
    if args.format != "json":
      return cli_common.error(_COMMAND, f"--format {args.format} is for detectors; "
                                        f"{args.model} is a segmentation model")
    return _predict_segmentation(args, model, images, outputs, out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  tiles, records = [], []
  for chunk in _batches(images, args.batch_size):
    det = model.predict([image for _, image in chunk])
    for j, (item, image) in enumerate(chunk):
      n = int(det["num_detections"][j])
      keep = det["scores"][j, :n] >= args.conf
      boxes, scores = det["boxes"][j, :n][keep], det["scores"][j, :n][keep]
      classes = det["classes"][j, :n][keep]
      picture = draw.draw_detections(image, boxes, classes, scores, class_names=model.class_names)
      record = _record(item, image, boxes, scores, classes, model.class_names)
      record["drawing"] = outputs[item.name] + ".png"
      draw.save_image(picture, out_dir / record["drawing"])
      tiles.append(draw.fit_tile(picture))  # only thumbnails stay in memory
      records.append(record)
  if not records:
    return cli_common.error(_COMMAND, "no image could be read (see the messages above)")
  draw.save_grid(tiles, out_dir / "predictions.png")
  written = ["predictions.png", "detections.json", "one PNG per image"]
  if args.format == "coco":
    category_ids = list(range(len(model.class_names)))
    if args.coco_gt:
      image_ids, category_ids = predict_formats.coco_ids_from_ground_truth(
          args.coco_gt, [r["image"] for r in records], model.class_names)
      missing = [r["image"] for r, i in zip(records, image_ids) if i is None]
      if missing:
        raise ValueError(f"--coco-gt {args.coco_gt} has no image with file_name {missing[0]!r} "
                         f"({len(missing)} input(s) not found)")
      for record, image_id in zip(records, image_ids):
        record["image_id"] = image_id
    results = predict_formats.coco_results(records, category_ids)
    (out_dir / "coco_results.json").write_text(json.dumps(results))
    written.insert(2, "coco_results.json")
  elif args.format == "yolo":
    for record in records:
      path = out_dir / "labels" / (outputs[record["image"]] + ".txt")
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_text(predict_formats.yolo_lines(record))
    written.insert(2, "labels/*.txt")
  (out_dir / "detections.json").write_text(json.dumps(records, indent=1, ensure_ascii=False),
                                           encoding="utf-8")
  total = sum(len(r["detections"]) for r in records)
  print(f"{len(records)} image(s), {total} detection(s) with score >= {args.conf:g} -> "
        f"{out_dir}/ ({', '.join(written)})")
  return 0


def _predict_segmentation(args, model, images, outputs, out_dir):
  """Writes each image with its mask blended over it (`NAME.png`), the mask itself (`NAME_mask.png`,
  8-bit class ids), a grid `predictions.png` and `segmentation.json` (per image: `path`,
  `drawing`, `mask`, size and `pixels_per_class`)."""
  from jaxdet.data import draw  # pylint: disable=g-import-not-at-top
  from . import segmentation  # pylint: disable=g-import-not-at-top
  out_dir.mkdir(parents=True, exist_ok=True)
  tiles, records = [], []
  for chunk in _batches(images, args.batch_size):
    masks = model.predict([image for _, image in chunk])["masks"]
    for (item, image), mask in zip(chunk, masks):
      ids, counts = np.unique(mask, return_counts=True)
      record = {"image": item.name, "path": None if item.path is None else str(item.path),
                "image_id": item.image_id, "height": int(image.shape[0]),
                "width": int(image.shape[1]), "drawing": outputs[item.name] + ".png",
                "mask": outputs[item.name] + "_mask.png",
                "pixels_per_class": {model.class_names[int(i)]: int(c)
                                     for i, c in zip(ids, counts)}}
      picture = segmentation.overlay(image, mask)
      draw.save_image(picture, out_dir / record["drawing"])
      draw.save_image(np.asarray(mask, np.uint8), out_dir / record["mask"])
      tiles.append(draw.fit_tile(picture))
      records.append(record)
  if not records:
    return cli_common.error(_COMMAND, "no image could be read (see the messages above)")
  draw.save_grid(tiles, out_dir / "predictions.png")
  (out_dir / "segmentation.json").write_text(json.dumps(records, indent=1, ensure_ascii=False),
                                             encoding="utf-8")
  print(f"{len(records)} image(s) segmented -> {out_dir}/ (predictions.png, segmentation.json, "
        f"one overlay PNG and one mask PNG per image)")
  return 0


def register(subparsers):
  """Adds `jaxdet predict` to the `jaxdet` parser."""
  p = subparsers.add_parser(
      _COMMAND, help="run an ONNX file or a workdir on images and draw the results",
      description="Run an ONNX file or a workdir on images and draw the results: a detector "
                  "(an ONNX file from `jaxdet export`, served by onnxruntime, or a training "
                  "workdir, served by JAX) on images or on a TFDS split. Writes into "
                  "--out each image with its detections drawn (named after the input's path "
                  "relative to the inputs' common folder), a grid predictions.png, and "
                  "detections.json (one record per image: its path, drawing, image_id and "
                  "detections); --format adds COCO results or YOLO txt files. Image files are "
                  "read as displayed (EXIF orientation applied).")
  p.add_argument("images", nargs="*",
                 help="image files, folders (their image files) and globs ('photos/**/*.jpg')")
  p.add_argument("--model", required=True,
                 help="ONNX file written by `jaxdet export`, or a training workdir")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--conf", "--min-score", dest="conf", type=cli_common.unit_float,
                 default=DEFAULT_CONF,
                 help="keep detections scoring at least this, in the drawings AND in every "
                      f"output file (default {DEFAULT_CONF}; the model's own, lower threshold "
                      "applies first; use 0 to keep all its detections, e.g. for mAP)")
  p.add_argument("--format", choices=("json", "coco", "yolo"), default="json",
                 help="json: detections.json only (always written); coco: also "
                      "coco_results.json ([{image_id, category_id, bbox [x,y,w,h], score}], "
                      "what `jaxdet evaluate --detections` reads); yolo: also labels/NAME.txt "
                      "('class cx cy w h score', normalised)")
  p.add_argument("--coco-gt", default=None, metavar="JSON",
                 help="with --format coco: take image ids (matching file_name) and category ids "
                      "(matching names) from this COCO annotation file. Without it, image ids "
                      "are 1, 2, ... in input order (--dataset: the split's image ids) and "
                      "category ids are the class ids")
  p.add_argument("--on-error", choices=("skip", "fail"), default="skip",
                 help="an input that cannot be read: skip it with a message (default) or stop")
  p.add_argument("--dataset", default=None, help="TFDS dataset instead of image files")
  p.add_argument("--split", default="validation", help="split of --dataset")
  p.add_argument("--num-images", type=cli_common.positive_int, default=16,
                 help="images of --dataset to predict on")
  p.add_argument("--data-dir", default=None, help="TFDS data dir of --dataset")
  p.add_argument("--batch-size", type=cli_common.positive_int, default=8)
  p.set_defaults(func=cli_common.guarded(_COMMAND, _predict))
  return p
