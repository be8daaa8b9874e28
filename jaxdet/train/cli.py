"""`jaxdet train --config experiments/NAME.py --workdir DIR [--config.KEY=VALUE ...]`."""

import argparse
import os
import pathlib
import sys

from jaxdet.train import config as config_lib


class _OverridesParser(argparse.ArgumentParser):
  """Collects `--config.KEY=VALUE` / `--config.KEY VALUE` into `args.config_overrides`.

  argparse cannot declare options whose names are only known after the config file is read, so
  they are set aside before the ordinary parse and validated against the config later.
  """

  def parse_known_args(self, args=None, namespace=None):
    args = list(sys.argv[1:] if args is None else args)
    overrides, rest, i = [], [], 0
    while i < len(args):
      if args[i].startswith("--config."):
        overrides.append(args[i])
        if "=" not in args[i] and i + 1 < len(args):
          overrides.append(args[i + 1])
          i += 1
      else:
        rest.append(args[i])
      i += 1
    namespace, extras = super().parse_known_args(rest, namespace)
    namespace.config_overrides = overrides
    return namespace, extras


def register(subparsers) -> None:
  """Adds the `train` subcommand."""
  parser = subparsers.add_parser(
      "train", help="train a detector or segmentation model from a config file",
      description="Train a detector or segmentation model from a config file. Overrides: --config.KEY=VALUE, e.g. "
                  "--config.total_steps=40 --config.batch_size=4. Rerunning on an existing "
                  "workdir resumes from its latest checkpoint.")
  parser.add_argument("--config", dest="config_file", default=None,
                      help="experiment file defining get_config() (default when resuming: the "
                           "workdir's config.json)")
  parser.add_argument("--workdir", required=True, help="output folder")
  parser.add_argument("--no-progress", action="store_true",
                      help="no progress bars (the trainer's, and TFDS's while it builds a dataset)")
  from jaxdet.train import distributed  # [distributed] --coordinator/--num-processes/--process-id
  distributed.add_launch_flags(parser)
  parser.__class__ = _OverridesParser
  parser.set_defaults(func=_run)


def resolve_config(config_file: str | None, workdir: pathlib.Path, overrides: list[str]):
  """The config to train with: the file (or the workdir's config.json) plus overrides.

  Raises:
    config_lib.ConfigError: on any problem, with a one-line message.
  """
  parsed = config_lib.parse_override_args(overrides)
  if config_file:
    base = config_lib.load_config_file(config_file)
  elif (workdir / "config.json").exists():
    base = config_lib.from_json((workdir / "config.json").read_text())
  else:
    raise config_lib.ConfigError("--config is required for a new workdir")
  return config_lib.apply_overrides(base, parsed)


def _run(args) -> int:
  workdir = pathlib.Path(args.workdir)
  try:
    config = resolve_config(args.config_file, workdir, list(args.config_overrides))
  except config_lib.ConfigError as e:
    print(f"jaxdet train: error: {e}", file=sys.stderr)
    return 2
  from jaxdet.train import distributed  # [distributed] start before any JAX computation.
  try:
    distributed.initialize_from_args(args)
  except distributed.LaunchError as e:
    print(f"jaxdet train: error: {e}", file=sys.stderr)
    return 2
  from jaxdet.train import interrupt
  try:
    from jaxdet.train import loop  # Heavy imports only once the arguments are valid.
  except KeyboardInterrupt:  # Before the trainer's signal handler is installed.
    print("jaxdet train: SIGINT before training started: nothing was written; run the same "
          "command again to start", file=sys.stderr)
    return interrupt.EXIT_CODE
  if args.no_progress:  # TFDS's bars too (e.g. while `shapes` is built on first use).
    from jaxdet.data import sources
    sources.show_progress_bars(False)
  try:
    # [distributed] a failure is reported to the other processes, which then stop.
    metrics = distributed.run_guarded(loop.train_and_evaluate, config, workdir,
                                      progress=not args.no_progress,
                                      quiet=(interrupt.TrainingInterrupted,))
  except interrupt.TrainingInterrupted as e:
    print(f"jaxdet train: {e}", file=sys.stderr)
    return interrupt.EXIT_CODE
  except (loop.TrainingError, config_lib.ConfigError, ValueError, FileNotFoundError) as e:
    print(f"jaxdet train: error: {e}", file=sys.stderr)
    return 1
  except Exception as e:  # pylint: disable=broad-except
    # Unexpected failures still get one line; JAXDET_DEBUG=1 shows the traceback.
    if os.environ.get("JAXDET_DEBUG"):
      raise
    print(f"jaxdet train: error: {type(e).__name__}: {e} (set JAXDET_DEBUG=1 for the traceback)",
          file=sys.stderr)
    return 1
  if metrics:
    # Detection: COCO AP; segmentation: mIoU and pixel accuracy.
    keys = ("AP", "AP50", "AP75", "mean_iou", "pixel_accuracy")
    print("final: " + ", ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics))
  return 0
