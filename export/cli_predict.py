"""`jaxdet predict`: run an exported ONNX detector on image files or a TFDS split and draw it."""

import json
import pathlib

from . import cli_common

_COMMAND = "predict"


def _read_image(path):
  """uint8 ``[H, W, 3]`` RGB of an image file; ValueError when it cannot be decoded."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"image not found: {path}")
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"))
  except (UnidentifiedImageError, OSError) as e:
    raise ValueError(f"cannot read image {path}: {e}") from e


def _dataset_images(dataset, split, num_images, data_dir):
  """``[(name, image uint8 [H, W, 3])]`` of the first ``num_images`` examples of a TFDS split."""
  from jaxdet.data import sources  # pylint: disable=g-import-not-at-top
  from jaxdet.data import tfds_maps  # pylint: disable=g-import-not-at-top
  source, _ = sources.open_split(dataset, split, data_dir)
  out = []
  for i in range(min(num_images, len(source))):
    example = sources.record_to_example(tfds_maps.to_jaxdet_record(source[i], i))
    out.append((f"{split}_{i:05d}", example["image"]))
  if not out:
    raise ValueError(f"{dataset}:{split} has no examples")
  return out


def _predict(args):
  from jaxdet.data import draw  # pylint: disable=g-import-not-at-top
  from . import runtime  # pylint: disable=g-import-not-at-top

  if bool(args.images) == bool(args.dataset):
    return cli_common.error(_COMMAND, "give image files or --dataset (not both, not neither)")
  detector = runtime.Detector(args.model)
  if not detector.metadata.include_nms:
    return cli_common.error(_COMMAND, f"{args.model} was exported with --no-nms (raw boxes and "
                                      f"scores); predict needs an export with NMS")
  if args.dataset:
    named = _dataset_images(args.dataset, args.split, args.num_images, args.data_dir)
  else:
    named = [(pathlib.Path(p).stem, _read_image(p)) for p in args.images]

  out_dir = pathlib.Path(args.out)
  out_dir.mkdir(parents=True, exist_ok=True)
  drawn, records = [], []
  for start in range(0, len(named), args.batch_size):
    chunk = named[start:start + args.batch_size]
    det = detector.predict([image for _, image in chunk])
    for j, (name, image) in enumerate(chunk):
      n = int(det["num_detections"][j])
      keep = det["scores"][j, :n] >= args.min_score
      boxes, scores = det["boxes"][j, :n][keep], det["scores"][j, :n][keep]
      classes = det["classes"][j, :n][keep]
      picture = draw.draw_detections(image, boxes, classes, scores,
                                     class_names=detector.class_names)
      draw.save_grid([picture], out_dir / f"{name}.png", columns=1, pad=0)
      drawn.append(picture)
      records.append({"image": name, "height": int(image.shape[0]), "width": int(image.shape[1]),
                      "detections": [
                          {"box_xyxy": [round(float(v), 2) for v in b], "score": float(s),
                           "class_id": int(c), "class_name": detector.class_names[int(c)]}
                          for b, s, c in zip(boxes, scores, classes)]})
  draw.save_grid(drawn, out_dir / "predictions.png")
  (out_dir / "detections.json").write_text(json.dumps(records, indent=1))
  total = sum(len(r["detections"]) for r in records)
  print(f"{len(records)} image(s), {total} detection(s) -> {out_dir}/ (predictions.png, "
        f"detections.json, one PNG per image)")
  return 0


def register(subparsers):
  """Adds `jaxdet predict` to the `jaxdet` parser."""
  p = subparsers.add_parser(
      _COMMAND, help="detect objects with an exported ONNX model and draw them",
      description="Runs an ONNX detector from `jaxdet export` with onnxruntime on image files or "
                  "on a TFDS split, and writes each image with its detections drawn, a grid "
                  "predictions.png and detections.json into --out.")
  p.add_argument("images", nargs="*", help="image files (PNG, JPEG, ...)")
  p.add_argument("--model", required=True, help="ONNX file written by `jaxdet export`")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--dataset", default=None, help="TFDS dataset instead of image files")
  p.add_argument("--split", default="validation", help="split of --dataset")
  p.add_argument("--num-images", type=cli_common.positive_int, default=16,
                 help="images of --dataset to predict on")
  p.add_argument("--data-dir", default=None, help="TFDS data dir of --dataset")
  p.add_argument("--batch-size", type=cli_common.positive_int, default=8)
  p.add_argument("--min-score", type=cli_common.unit_float, default=0.0,
                 help="draw only detections scoring at least this (the model's own threshold "
                      "applies first)")
  p.set_defaults(func=cli_common.guarded(_COMMAND, _predict))
  return p
