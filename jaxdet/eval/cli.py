"""`jaxdet evaluate`: COCO or VOC metrics of a COCO-format result file, or of a trained workdir's
model on a split of its dataset."""

import json
import os
import sys


def register(subparsers):
  """Adds the ``evaluate`` subcommand to an argparse subparsers object."""
  p = subparsers.add_parser(
      "evaluate", help="COCO or VOC metrics of a result file or of a trained workdir",
      description="COCO or VOC metrics of a result file or of a trained workdir. "
                  "Either evaluates COCO-format detections ([{image_id, category_id, bbox "
                  "[x,y,w,h], score}, ...]) against a COCO annotation file (--gt, --detections), "
                  "or a trained model on a split of its dataset (--workdir, with the same report "
                  "as training). Prints the 12 COCO stats (pycocotools-exact; or VOC AP) and per-class AP.")
  p.add_argument("--gt", help="COCO ground-truth annotation JSON")
  p.add_argument("--detections", help="COCO result JSON (a list of detections)")
  p.add_argument("--workdir", help="a training workdir: evaluate its model on --split of its "
                 "dataset; the report goes to WORKDIR/evaluate/SPLIT-stepN (or --plots DIR)")
  p.add_argument("--split", help="with --workdir: the split (default: the run's eval_split)")
  p.add_argument("--checkpoint", default="best", help="with --workdir: best (highest val AP; "
                 "the latest when the run never evaluated), latest, or a step number")
  p.add_argument("--metric", choices=("coco", "voc"), default="coco")
  p.add_argument("--plots", metavar="DIR", help="write PR / F1 / confusion-matrix PNGs, the "
                 "stats JSON and the table into DIR (COCO only)")
  p.add_argument("--json", metavar="OUT", help="write the metrics as JSON to OUT")
  p.add_argument("--iou-threshold", type=float, default=0.5, help="VOC IoU threshold")
  p.add_argument("--voc07", action="store_true", help="VOC2007 11-point AP (default all-point)")
  p.add_argument("--plus-one", action="store_true",
                 help="VOC legacy '+1 pixel' box convention (width = x2 - x1 + 1)")
  from jaxdet.train import distributed  # [distributed] for `--workdir` evaluations
  distributed.add_launch_flags(p)
  p.set_defaults(func=run)


def _voc_table(result) -> str:
  width = max([5] + [len(n) for n in result["per_class"]])
  lines = [f"{'class':<{width}}  {'AP':>7}  {'npos':>6}"]
  for name, ap in result["per_class"].items():
    lines.append(f"{name:<{width}}  {ap:7.4f}  {result['num_positives'][name]:>6}")
  lines.append(f"{'mAP':<{width}}  {result['mAP']:7.4f}")
  return "\n".join(lines)


def run(args) -> int:
  """Runs the subcommand; returns the exit code (2 with a one-line message on bad input)."""
  from jaxdet.eval import inputs, report, voc
  from jaxdet.train import distributed
  try:
    distributed.initialize_from_args(args)  # [distributed] no-op without settings
    if args.workdir:
      return _run_workdir(args)
    if args.split or args.checkpoint != "best":
      raise ValueError("--split and --checkpoint need --workdir")
    if not (args.gt and args.detections):
      raise ValueError("pass --gt and --detections (a result file), or --workdir (a trained run)")
    if args.plots and args.metric != "coco":
      raise ValueError("--plots is only available with --metric coco")
    gt = inputs.load_ground_truth(args.gt)
    raw = inputs.read_json(args.detections, "detections")
    dets = inputs.load_detections(raw, gt)
    if isinstance(raw, list) and len(raw) > len(dets.order):
      print(f"note: {len(raw) - len(dets.order)} detection(s) of categories absent from the "
            f"ground truth were ignored (as pycocotools does)", file=sys.stderr)
    if args.metric == "coco":
      from jaxdet.eval.coco import coco_evaluate
      result = coco_evaluate(gt, dets)
      if args.plots:
        report.write_report(gt, dets, args.plots, result=result)
      print(report.format_table(result))
      summary = report.stats_dict(result)
    else:
      result = voc.voc_evaluate(gt, dets, iou_threshold=args.iou_threshold,
                                use_07_metric=args.voc07, plus_one=args.plus_one)
      print(_voc_table(result))
      summary = {"mAP": result["mAP"], "per_class": result["per_class"],
                 "iou_threshold": args.iou_threshold, "use_07_metric": args.voc07,
                 "plus_one": args.plus_one}
    if args.json:
      folder = os.path.dirname(os.path.abspath(args.json))
      os.makedirs(folder, exist_ok=True)
      with open(args.json, "w") as f:
        json.dump(summary, f, indent=1)
  except ValueError as e:
    print(f"jaxdet evaluate: error: {e}", file=sys.stderr)
    return 2
  except OSError as e:
    where = f": {e.filename}" if e.filename else ""
    print(f"jaxdet evaluate: error: {e.strerror or e}{where}", file=sys.stderr)
    return 2
  return 0


def _run_workdir(args) -> int:
  """`--workdir`: the model of a checkpoint on a split of its dataset (COCO, as training)."""
  if args.gt or args.detections:
    raise ValueError("--workdir evaluates a trained model; it cannot be combined with --gt or "
                     "--detections")
  if args.metric != "coco":
    raise ValueError("--workdir evaluates with --metric coco (as training does)")
  if not os.path.isdir(args.workdir):
    raise ValueError(f"--workdir {args.workdir}: no such folder")
  from jaxdet.train.evaluate import evaluate_workdir
  import jax  # pylint: disable=g-import-not-at-top
  metrics, out_dir = evaluate_workdir(args.workdir, split=args.split,
                                      checkpoint=args.checkpoint, report_dir=args.plots)
  if jax.process_index() != 0:  # [distributed] only process 0 writes (and prints) the report.
    return 0
  if "mean_iou" in metrics:  # a segmentation model (jaxdet.train.segmentation)
    print("  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    print(f"report: {out_dir}")
    if args.json:
      os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
      with open(os.path.join(out_dir, "segmentation_metrics.json")) as src, open(args.json, "w") as f:
        f.write(src.read())
    return 0
  with open(os.path.join(out_dir, "coco_table.txt")) as f:
    print(f.read().rstrip("\n"))
  print(f"report: {out_dir}")
  if args.json:
    folder = os.path.dirname(os.path.abspath(args.json))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(out_dir, "coco_stats.json")) as src, open(args.json, "w") as f:
      f.write(src.read())
  return 0
