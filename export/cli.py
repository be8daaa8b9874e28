"""`jaxdet export`: a trained workdir -> one ONNX detector (preprocessing and NMS in the graph)."""

import pathlib
import time

from . import cli_common

_COMMAND = "export"


def val_ap(workdir, step_dir):
  """The validation AP of the model in `step_dir`, or None when that step was not evaluated.

  A best checkpoint's metadata holds its own evaluation; a latest checkpoint's holds the last
  evaluation *before* it (its final evaluation runs after the save), so its AP comes from the
  evaluation that `metrics.jsonl` logged at its step.
  """
  from jaxdet.train import checkpoint  # pylint: disable=g-import-not-at-top
  from jaxdet.train import logging as log_lib  # pylint: disable=g-import-not-at-top
  step_dir = pathlib.Path(step_dir)
  if step_dir.parent.name == checkpoint.BEST:
    return checkpoint.read_meta(step_dir).get("metrics", {}).get(checkpoint.BEST_METRIC)
  if not step_dir.name.isdigit():
    return None
  return next((r.get(checkpoint.BEST_METRIC) for r in log_lib.read_metrics(workdir)
               if r.get("split") == "eval" and r.get("step") == int(step_dir.name)), None)


def _export(args):
  import numpy as np  # pylint: disable=g-import-not-at-top

  from . import onnx_export  # pylint: disable=g-import-not-at-top
  from . import runtime  # pylint: disable=g-import-not-at-top

  workdir = pathlib.Path(args.workdir)
  if not workdir.exists():
    return cli_common.error(_COMMAND, f"workdir not found: {workdir}")
  from jaxdet.train import checkpoint  # pylint: disable=g-import-not-at-top
  from jaxdet.inference.load import load  # pylint: disable=g-import-not-at-top
  step_dir = checkpoint.resolve_checkpoint(
      workdir, None if args.checkpoint == "auto" else args.checkpoint)
  detector = load(step_dir)
  step = int(step_dir.name) if step_dir.name.isdigit() else -1
  kind = step_dir.parent.name
  kind = kind if kind in (checkpoint.BEST, checkpoint.LATEST) else ""
  if getattr(detector, "task", "detection") == "segmentation":
    return _export_segmentation(args, detector, step_dir, step, kind)
  ap = val_ap(workdir, step_dir)
  print(f"exporting checkpoint step {step} ({kind}"
        + (f", val AP {ap:.4f}" if isinstance(ap, (int, float)) else "") + f"): {step_dir}")
  start = time.perf_counter()
  onnx_export.export_onnx(
      detector, args.output, image_size=args.image_size, max_detections=args.max_detections,
      score_threshold=args.score_threshold, iou_threshold=args.iou_threshold,
      pre_nms_top_k=args.pre_nms_top_k, opset=args.opset,
      dynamic_image_size=args.dynamic_image_size, fp16=args.fp16, include_nms=not args.no_nms,
      checkpoint_step=step, checkpoint_kind=kind, num_proposals=args.num_proposals)
  seconds = time.perf_counter() - start
  # Smoke-run the file as a user would, so a broken export fails here and not in deployment.
  served = runtime.Detector(args.output)
  size = served.image_size
  extra = ({} if served.num_proposals is None  # Fast R-CNN: one proposal box
           else {"proposals": np.asarray([[[0, 0, size / 2, size / 2]]], np.float32)})
  served.predict(np.zeros((size, size, 3), np.uint8), **extra)
  m = served.metadata
  print(f"wrote {args.output} ({pathlib.Path(args.output).stat().st_size / 2**20:.1f} MiB, "
        f"{seconds:.1f} s): {m.model_name}, input {'[N, H, W, 3]' if m.dynamic_image_size else f'[N, {size}, {size}, 3]'} "
        f"uint8"
        + (f" + proposals [N, {served.num_proposals}, 4]" if served.num_proposals else "")
        + f", {len(m.class_names)} classes, "
        + (f"K={m.max_detections}, score>={m.score_threshold}, IoU {m.iou_threshold}"
           if m.include_nms else "raw boxes/scores (no NMS)")
        + (", fp16" if m.fp16 else "") + f"; step {m.checkpoint_step} ({m.checkpoint_kind}); "
        f"runs on {served.providers[0]}")
  return 0


def _export_segmentation(args, segmenter, step_dir, step, kind):
  """`jaxdet export` of a segmentation model: masks (argmax) in the graph, `--probabilities`."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from . import segmentation  # pylint: disable=g-import-not-at-top
  detection_only = [f"--{k.replace('_', '-')}" for k in (
      "max_detections", "score_threshold", "iou_threshold", "pre_nms_top_k")
                    if getattr(args, k) is not None]
  detection_only += [f"--{k.replace('_', '-')}" for k in ("dynamic_image_size", "fp16", "no_nms")
                     if getattr(args, k)]
  if detection_only:
    return cli_common.error(_COMMAND, f"{' '.join(detection_only)}: detection options; "
                                      f"{args.workdir} is a segmentation model")
  print(f"exporting checkpoint step {step} ({kind}): {step_dir}")
  start = time.perf_counter()
  segmentation.export_segmentation_onnx(
      segmenter, args.output, image_size=args.image_size, opset=args.opset,
      probabilities=args.probabilities, checkpoint_step=step, checkpoint_kind=kind)
  seconds = time.perf_counter() - start
  served = segmentation.Segmenter(args.output)
  size = served.image_size
  served.predict(np.zeros((size, size, 3), np.uint8))
  print(f"wrote {args.output} ({pathlib.Path(args.output).stat().st_size / 2**20:.1f} MiB, "
        f"{seconds:.1f} s): {served.metadata.model_name} segmentation, input [N, {size}, {size}, "
        f"3] uint8, {len(served.class_names)} classes, masks"
        + (" + probabilities" if served.metadata.probabilities else "")
        + f"; step {step} ({kind}); runs on {served.providers[0]}")
  return 0


def register(subparsers):
  """Adds `jaxdet export` to the `jaxdet` parser."""
  p = subparsers.add_parser(
      _COMMAND, help="export a trained model to one self-contained ONNX file",
      description="Export a trained model to one self-contained ONNX file (preprocessing and "
                  "NMS in the graph). A detector's file takes uint8 images [N,H,W,3] and outputs num_detections, "
                  "detection_boxes (xyxy pixels), detection_scores and detection_classes; "
                  "thresholds default to the training config. A segmentation model's outputs "
                  "masks (and --probabilities).")
  p.add_argument("--workdir", required=True, help="training workdir (or checkpoint folder)")
  p.add_argument("--checkpoint", default="auto", metavar="best|latest|STEP",
                 help="which checkpoint of --workdir: best (highest val AP), latest, or a step "
                      "number (default: best when there is one, else latest); the step is "
                      "printed and recorded in the ONNX metadata (checkpoint_step, "
                      "checkpoint_kind)")
  p.add_argument("--output", required=True, help="ONNX file to write")
  p.add_argument("--image-size", type=cli_common.positive_int, default=None,
                 help="square network input S (default: the training size)")
  p.add_argument("--max-detections", type=cli_common.positive_int, default=None,
                 help="detections per image K")
  p.add_argument("--score-threshold", type=cli_common.unit_float, default=None)
  p.add_argument("--iou-threshold", type=cli_common.unit_float, default=None)
  p.add_argument("--pre-nms-top-k", type=cli_common.positive_int, default=None,
                 help="candidates entering NMS")
  p.add_argument("--opset", type=int, default=None, help="ONNX opset, 18..23 (default 21)")
  p.add_argument("--dynamic-image-size", action="store_true",
                 help="accept any H, W and letterbox inside the graph")
  p.add_argument("--fp16", action="store_true", help="run the network in float16")
  p.add_argument("--no-nms", action="store_true",
                 help="output raw decoded boxes [N,A,4] and scores [N,A,C] instead of detections")
  p.add_argument("--num-proposals", type=cli_common.positive_int, default=None,
                 help="Fast R-CNN models (proposals=external): P, the proposals per image of "
                      "the graph's `proposals` input (default: rpn_post_nms_top_n_test)")
  p.add_argument("--probabilities", action="store_true",
                 help="segmentation models: also output per-class probabilities [N,S,S,K]")
  p.set_defaults(func=cli_common.guarded(_COMMAND, _export))
  return p
