"""One process of a multi-process test run (`test_distributed.py` starts two of them).

Real `shapes/tiny` data through `loop.build_components`, with the tiny stand-in model so that
compiling stays quick. Launch settings come from the JAX_* environment, as a user would set them.

  python dist_worker.py train --workdir W --data-dir D [--steps N] [--interrupt-at S]
  python dist_worker.py eval --workdir W --data-dir D --checkpoint STEP_DIR --out OUT.npz
"""

import argparse
import json
import os
import sys

import numpy as np


def config_for(data_dir, *, steps=4, eval_every=0):
  import train_standins as si  # pylint: disable=g-import-not-at-top
  return si.tiny_config(total_steps=steps, eval_every=eval_every, dataset="shapes/tiny",
                        data_dir=str(data_dir), eval_batch_size=3, data_threads=1,
                        augment="none", **{"checkpoint.every": 2})


def shapes_components(config, *, interrupt_at=None):
  """`loop.build_components` on shapes/tiny with the stand-in model, loss and decode; when
  `interrupt_at` is given, process 0 raises SIGINT while fetching that step's batch."""
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections  # pylint: disable=g-import-not-at-top
  import train_standins as si  # pylint: disable=g-import-not-at-top
  from jaxdet.train import loop  # pylint: disable=g-import-not-at-top
  real = ml_collections.ConfigDict(config.to_dict())
  from jaxdet import models  # pylint: disable=g-import-not-at-top
  real.model = models.default_config("yolo")  # a registered model; replaced below
  components = loop.build_components(real)
  components.model, components.loss_fn = si.TinyDetector(), si.tiny_loss
  components.decode = si.tiny_decode
  if interrupt_at is not None and jax.process_index() == 0:
    si.interrupting(components, interrupt_at)
  return components


def _evaluate(config, checkpoint, out):
  from jaxdet.eval.gather import gather_detections  # pylint: disable=g-import-not-at-top
  from jaxdet.train import checkpoint as ckpt  # pylint: disable=g-import-not-at-top
  from jaxdet.train import evaluate as eval_lib  # pylint: disable=g-import-not-at-top
  from jaxdet.inference.load import postprocess_settings  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  components = shapes_components(config)
  variables, _ = ckpt.read_step_dir(checkpoint)
  predict = eval_lib.make_predict_fn(components.model, components.decode,
                                     image_size=config.image_size,
                                     postprocess=postprocess_settings(config))
  dets = gather_detections(eval_lib.predict_dataset(predict, variables,
                                                    components.eval_batches()))
  metrics = eval_lib.evaluate(predict=predict, variables=variables,
                              batches=components.eval_batches(),
                              ground_truth=components.ground_truth(),
                              class_names=components.class_names)
  if jax.process_index() == 0:
    np.savez(out, metrics=json.dumps(metrics), **dets)


def main(argv):
  parser = argparse.ArgumentParser()
  parser.add_argument("mode", choices=("train", "eval"))
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--data-dir", required=True)
  parser.add_argument("--steps", type=int, default=4)
  parser.add_argument("--eval-every", type=int, default=0)
  parser.add_argument("--interrupt-at", type=int, default=None)
  parser.add_argument("--checkpoint")
  parser.add_argument("--out")
  args = parser.parse_args(argv)
  from jaxdet.train import distributed  # pylint: disable=g-import-not-at-top
  from jaxdet.train import loop  # pylint: disable=g-import-not-at-top
  distributed.initialize(distributed.resolve_launch())
  config = config_for(args.data_dir, steps=args.steps, eval_every=args.eval_every)
  if args.mode == "eval":
    _evaluate(config, args.checkpoint, args.out)
    return 0
  try:
    metrics = distributed.run_guarded(
        loop.train_and_evaluate, config, args.workdir, progress=False,
        components=shapes_components(config, interrupt_at=args.interrupt_at),
        quiet=(loop.TrainingInterrupted,))
  except loop.TrainingInterrupted as e:
    print(f"interrupted: {e}", flush=True)
    return 130
  print("final:", json.dumps(metrics), flush=True)
  return 0


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  sys.exit(main(sys.argv[1:]))
