"""The strict loader shared by the converters: a state dict (name -> array) onto a jaxdet
variable structure through a name map, and weight-file readers.

A name map turns a jaxdet module path (`("backbone", "layer1_0", "conv1", "conv")`) into the
source's module prefix (`"layer1.0.conv1"`) and, for a Linear layer fed by a flatten, the
source's (C, H, W) input shape. Leaf names and array layouts follow from the jaxdet leaf: conv
kernels OIHW -> HWIO, Linear weights transposed (flattened inputs permuted from CHW to jaxdet's
HWC order), norm `weight`/`bias` -> `scale`/`bias` params, BatchNorm `running_mean`/`running_var`
-> `batch_stats`. Every jaxdet leaf needs its key and every key its leaf, with the expected
shape; `num_batches_tracked` counters are accepted and ignored.

Nothing here imports torch unless a `.pth` file is read: state dicts may hold NumPy arrays or
torch tensors (read through `.numpy()`), and `.safetensors` files are read with the
`safetensors` NumPy API.
"""

import argparse
import pathlib
import re
import sys
from typing import Any, Callable, Mapping

import flax
import numpy as np

_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
         "var": "running_var"}


class ConversionError(ValueError):
  """A state dict does not fit the architecture (the message names the key)."""


def to_numpy(value) -> np.ndarray:
  """A NumPy array from a NumPy array or a torch tensor (without importing torch)."""
  if hasattr(value, "detach"):  # torch.Tensor
    value = value.detach().cpu()
    if str(value.dtype) == "torch.bfloat16":  # NumPy has no bfloat16
      value = value.float()
    value = value.numpy()
  return np.asarray(value)


def _torch_shape(leaf: str, shape: tuple[int, ...], chw) -> tuple[int, ...]:
  if leaf == "kernel" and len(shape) == 4:  # HWIO -> OIHW
    return (shape[3], shape[2], shape[0], shape[1])
  if leaf == "kernel" and len(shape) == 2:  # (in, out) -> (out, in)
    return (shape[1], shape[0])
  return shape


def _to_jax_layout(leaf: str, array: np.ndarray, chw) -> np.ndarray:
  if leaf == "kernel" and array.ndim == 4:
    return array.transpose(2, 3, 1, 0)
  if leaf == "kernel" and array.ndim == 2:
    if chw is not None:  # flatten order CHW (torch) -> HWC (NHWC reshape)
      out = array.shape[0]
      return array.reshape(out, *chw).transpose(2, 3, 1, 0).reshape(-1, out)
    return array.T
  return array


def convert_variables(name_map: Callable, abstract_variables: Mapping, state_dict: Mapping[str, Any],
                      *, what: str = "state dict") -> dict:
  """Strictly converts a torchvision state dict onto a jaxdet variable structure.

  Args:
    name_map: `module path tuple -> (torchvision prefix, chw or None)`.
    abstract_variables: `{"params", "batch_stats"}` of the jaxdet module (arrays or
      `jax.ShapeDtypeStruct`, e.g. from `jax.eval_shape(module.init, ...)`).
    state_dict: torchvision key -> NumPy array or torch tensor.
    what: how error messages name the source.

  Returns:
    `{"params", "batch_stats"}` of float32 NumPy arrays with the structure of
    `abstract_variables`.

  Raises:
    ConversionError: a missing, unexpected or mis-shaped key (the message names it).
  """
  expected = {}  # torch key -> (collection, path, leaf, shape, chw)
  for collection in ("params", "batch_stats"):
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract_variables.get(collection, {})))
    for path, leaf in flat.items():
      prefix, chw = name_map(path[:-1])
      key = f"{prefix}.{_LEAF[path[-1]]}"
      if key in expected:
        raise AssertionError(f"name map sends two jaxdet leaves to {key}")  # a bug in this file
      expected[key] = (collection, path, path[-1], tuple(leaf.shape), chw)
  bn_prefixes = {k.rsplit(".", 1)[0] for k in expected if k.endswith(".running_mean")}
  unexpected = [k for k in state_dict if k not in expected and not (
      k.endswith(".num_batches_tracked") and k.rsplit(".", 1)[0] in bn_prefixes)]
  if unexpected:
    raise ConversionError(f"unexpected key {unexpected[0]!r} in the {what}"
                          + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
  missing = [k for k in expected if k not in state_dict]
  if missing:
    raise ConversionError(f"missing key {missing[0]!r} in the {what}"
                          + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
  out = {"params": {}, "batch_stats": {}}
  for key, (collection, path, leaf, shape, chw) in expected.items():
    array = to_numpy(state_dict[key])
    want = _torch_shape(leaf, shape, chw)
    if tuple(array.shape) != want:
      raise ConversionError(f"key {key!r} has shape {tuple(array.shape)} in the {what}, "
                            f"expected {want}")
    out[collection][path] = _to_jax_layout(leaf, array.astype(np.float32), chw)
  return {c: flax.traverse_util.unflatten_dict(v) for c, v in out.items()}


# Where training checkpoints keep the model's state dict, in order of preference: torchvision's
# references (`references/*/train.py` save {"model", "optimizer", "lr_scheduler", "epoch",
# "args"}, + "model_ema"), many repositories ("state_dict"), PyTorch's checkpoint tutorial
# ("model_state_dict"). The EMA weights (`model_ema`: an AveragedModel's keys, "module."-prefixed)
# are not converted.
CHECKPOINT_KEYS = ("model", "state_dict", "model_state_dict")

# Classes a checkpoint may pickle besides tensors and containers that are safe to rebuild under
# torch's weights-only unpickler (attribute bags: no code runs): the `args` of torchvision's
# references. Allowed for one `torch.load` only, not process-wide.
_SAFE_GLOBALS = (argparse.Namespace,)


def read_weights(path: str | pathlib.Path) -> dict[str, np.ndarray]:
  """Reads a state dict file: `.safetensors` (without torch) or a torch `.pth`/`.pt` file
  (`torch.load(weights_only=True)`, needs torch).

  A training checkpoint (a dict holding the state dict under one of `CHECKPOINT_KEYS`, e.g.
  torchvision's references' `{"model", "optimizer", "lr_scheduler", "epoch", "args"}`) is
  unwrapped, with a one-line note on stderr. Nothing is ever unpickled beyond tensors, containers
  and `argparse.Namespace`: a pickled model object is refused.

  Returns:
    key -> float32/int NumPy array.

  Raises:
    FileNotFoundError, ConversionError (unknown suffix, torch missing, a corrupt or foreign file,
    a pickled model, a dict that is not a state dict), each with one line naming the file.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"weights file not found: {path}")
  if path.suffix == ".safetensors":
    return _read_safetensors(path)
  if path.suffix not in (".pth", ".pt", ".bin"):
    raise ConversionError(f"weights file must be .pth, .pt or .safetensors, got {path.name!r}")
  try:
    import torch
  except ImportError as e:
    raise ConversionError(f"reading {path.name} needs PyTorch (pip install torch), or convert "
                          f"the file to .safetensors first") from e
  obj = _torch_load(torch, path)
  is_tensor = lambda v: isinstance(v, torch.Tensor)
  if not _is_state_dict(obj, is_tensor):
    obj = _unwrap_checkpoint(obj, path, is_tensor)
  return {k: to_numpy(v) for k, v in obj.items()}


def _read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file
  try:
    return dict(load_file(str(path)))
  except Exception as e:  # safetensors raises its own SafetensorError (and OSError, ValueError)
    text = str(e).strip().splitlines()
    raise ConversionError(f"{path.name} is not a safetensors file: corrupt or another format ("
                          f"{text[0] if text else type(e).__name__})") from None


def _torch_load(torch, path: pathlib.Path):
  """`torch.load(weights_only=True)` with `_SAFE_GLOBALS` allowed, its errors in one line."""
  try:
    allow = getattr(torch.serialization, "safe_globals", None)  # a context manager, torch >= 2.5
    if allow is None:
      return torch.load(str(path), map_location="cpu", weights_only=True)
    with allow(list(_SAFE_GLOBALS)):
      return torch.load(str(path), map_location="cpu", weights_only=True)
  except Exception as e:  # pickle.UnpicklingError, RuntimeError (zip), EOFError, ...
    # torch names the first global its unpickler refused ("Unsupported global: GLOBAL x.Y", or
    # "unsupported GLOBAL os.system whose module os is blocked"): for `torch.save(model)`, the
    # model's class.
    found = re.search(r"\bGLOBAL ([\w.]+)", str(e))
    if found:
      name = found.group(1)
      what = ("a pickled model object" if name.startswith("torch.nn.") or ".models." in name
              else "a pickled Python object")
      raise ConversionError(
          f"{path.name} holds {what} ({name}), which jaxdet does not unpickle (unpickling can "
          f"run arbitrary code): save the weights with torch.save(model.state_dict(), path) "
          f"and convert that file") from None
    raise ConversionError(f"{path.name} ({path.stat().st_size} bytes) is not a PyTorch state "
                          f"dict: the file is corrupt or was not written by torch.save") from None


def _is_state_dict(obj, is_tensor) -> bool:
  return (isinstance(obj, dict) and bool(obj)
          and all(isinstance(k, str) and is_tensor(v) for k, v in obj.items()))


def _unwrap_checkpoint(obj, path: pathlib.Path, is_tensor) -> dict:
  """The state dict inside a training checkpoint dict, with a note saying which key it was."""
  if not isinstance(obj, dict):
    raise ConversionError(f"{path.name} holds a {type(obj).__name__}, not a state dict "
                          f"(parameter name -> tensor)")
  key = next((k for k in CHECKPOINT_KEYS if _is_state_dict(obj.get(k), is_tensor)), None)
  keys = ("keys " + ", ".join(repr(k) for k in list(obj)[:5]) + (", ..." if len(obj) > 5 else "")
          if obj else "empty")
  if key is None:
    raise ConversionError(
        f"{path.name} holds a dict that is not a state dict ({keys}): expected "
        f"parameter name -> tensor, or a training checkpoint with the state dict under "
        f"{' or '.join(repr(k) for k in CHECKPOINT_KEYS)}")
  ema = " (its 'model_ema' weights are not used)" if "model_ema" in obj else ""
  print(f"note: {path.name} is a training checkpoint ({keys}): converting its {key!r} "
        f"state dict{ema}", file=sys.stderr)
  return obj[key]
