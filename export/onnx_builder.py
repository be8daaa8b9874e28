"""A tiny builder of ONNX graphs with `onnx.helper`: the node and initializer lists and the two
calls that fill them, shared by the graphs this package writes by hand."""

import numpy as np
from onnx import helper, numpy_helper


def builder(prefix):
  """``(nodes, initializers, const, op)`` of a new graph.

  ``const(name, value, dtype)`` adds an initializer named ``prefix + name`` and returns that
  name; ``op(op_type, inputs, name, **attrs)`` adds a node with the single output ``name`` (as
  given: a graph output keeps its name) and returns it.
  """
  nodes, inits = [], []

  def const(name, value, dtype):
    inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), f"{prefix}{name}"))
    return f"{prefix}{name}"

  def op(op_type, inputs, name, **attrs):
    nodes.append(helper.make_node(op_type, inputs, [name], name=f"{prefix}/{name}", **attrs))
    return name

  return nodes, inits, const, op
