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

import pathlib
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


def read_weights(path: str | pathlib.Path) -> dict[str, np.ndarray]:
  """Reads a state dict file: `.safetensors` (without torch) or a torch `.pth`/`.pt` file
  (`torch.load(weights_only=True)`, needs torch).

  Returns:
    key -> float32/int NumPy array.

  Raises:
    FileNotFoundError, ConversionError (unknown suffix, torch missing, not a state dict).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"weights file not found: {path}")
  if path.suffix == ".safetensors":
    from safetensors.numpy import load_file
    return dict(load_file(str(path)))
  if path.suffix not in (".pth", ".pt", ".bin"):
    raise ConversionError(f"weights file must be .pth, .pt or .safetensors, got {path.name!r}")
  try:
    import torch
  except ImportError as e:
    raise ConversionError(f"reading {path.name} needs PyTorch (pip install torch), or convert "
                          f"the file to .safetensors first") from e
  obj = torch.load(str(path), map_location="cpu", weights_only=True)
  if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
    obj = obj["state_dict"]  # training checkpoints wrap the state dict
  if not isinstance(obj, dict):
    raise ConversionError(f"{path.name} holds a {type(obj).__name__}, not a state dict")
  return {k: to_numpy(v) for k, v in obj.items()}


