"""Writes converted weights as a checkpoint folder with a training workdir's layout.

`DIR/config.json` (the resolved config) and `DIR/checkpoints/latest/0/{model,meta}`: `model` holds
`{"params", "batch_stats"}`, `meta` the JSON config, class names and the weights' source, as
`jaxdet.train.checkpoint` writes them; so `init_from.checkpoint=DIR`, `jaxdet.load(DIR)` and the
exporter read it like any workdir.
"""

import pathlib

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxdet.train import checkpoint as ckpt
from jaxdet.train import config as config_lib


def write_checkpoint(output, config, variables, *, class_names, source: dict) -> pathlib.Path:
  """Saves `variables` at step 0 of `output/checkpoints/latest`.

  Args:
    output: the folder to create (must not hold a checkpoint yet).
    config: the resolved ConfigDict (written to `config.json` and into `meta`).
    variables: `{"params", "batch_stats"}` (NumPy or JAX arrays).
    class_names: one name per output class.
    source: JSON-able description of where the weights came from (kept in `meta`).

  Returns:
    The step folder.

  Raises:
    FileExistsError: `output` already holds a checkpoint.
  """
  output = pathlib.Path(output).absolute()
  if (output / "checkpoints").exists():
    raise FileExistsError(f"{output} already holds checkpoints/; choose a new --output")
  output.mkdir(parents=True, exist_ok=True)
  (output / "config.json").write_text(config_lib.to_json(config))
  meta = {"step": 0, "class_names": [str(c) for c in class_names],
          "config": config_lib.to_json(config), "metrics": {}, "source": source}
  model = {"params": jax.tree.map(np.asarray, variables["params"]),
           "batch_stats": jax.tree.map(np.asarray, variables.get("batch_stats", {}))}
  manager = ckpt.latest_manager(output)
  manager.save(0, args=ocp.args.Composite(model=ocp.args.StandardSave(model),
                                          meta=ocp.args.JsonSave(meta)), force=True)
  manager.wait_until_finished()
  return output / "checkpoints" / ckpt.LATEST / "0"
