"""The `jaxdet` package itself (`jaxdet/__init__.py`): cheap to import, and its lazy names
(`load`, the subpackages) visible to `dir`, `help` and tab completion (issue 28)."""

import json
import pathlib
import subprocess
import sys

import jaxdet

ROOT = pathlib.Path(__file__).resolve().parents[1]
SUBPACKAGES = ("ops", "data", "models", "losses", "train", "eval", "convert", "inference")


def test_import_jaxdet_imports_no_jax_tf_or_subpackage():
  # A fresh interpreter: this one has imported everything already.
  code = ("import json, sys; before = set(sys.modules); import jaxdet; "
          "print(json.dumps(sorted(set(sys.modules) - before)))")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                        timeout=120, check=True)
  assert json.loads(proc.stdout) == ["jaxdet"]


def test_dir_lists_load_and_the_subpackages_and_each_resolves():
  names = dir(jaxdet)
  assert "load" in names and set(SUBPACKAGES) <= set(names)
  assert jaxdet.__all__ == ["load", *SUBPACKAGES]
  for name in jaxdet.__all__:  # every listed name is an attribute (tab completion, help)
    assert getattr(jaxdet, name) is not None
  assert jaxdet.load is jaxdet.inference.load.load
  assert jaxdet.ops.__name__ == "jaxdet.ops"


def test_help_shows_a_usage_example():
  doc = jaxdet.__doc__
  assert 'jaxdet.load("runs/demo")' in doc and '.predict("photo.jpg")' in doc
  assert "jaxdet --help" in doc
