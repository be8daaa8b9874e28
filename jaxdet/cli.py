"""The `jaxdet` command line. Each stage registers its own subcommands.

Subcommand modules expose ``register(subparsers)``; each registered parser sets
``func(args) -> int``. Modules are imported lazily so ``jaxdet --help`` is fast and a missing
optional extra (e.g. ``export``) only fails the subcommand that needs it.
"""

import argparse
import importlib
import importlib.util
import pathlib
import sys

# The import name of the `export/` folder (installed through a package-dir mapping, setup.py).
EXPORT_PACKAGE = "jaxdet_export"

# One line per subcommand for `jaxdet --help`, which imports none of the modules (fast, and a
# missing extra only fails its own command). Each module registers the same line as its `help`
# and opens its `description` with it (tests/test_jaxdet_cli.py checks both).
# At most 62 characters: one line beside the command names in an 80-column terminal.
SUMMARIES = {
    "evaluate": "COCO or VOC metrics of a result file or of a trained workdir",
    "data": "build, import, show and summarize datasets",
    "train": "train a detector or segmentation model from a config file",
    "export": "export a trained model to one self-contained ONNX file",
    "predict": "run an ONNX file or a workdir on images and draw the results",
    "convert": "convert torchvision or Darknet weights to a checkpoint folder",
}

# (subcommand, module that registers it)
_SUBCOMMANDS = (
    ("evaluate", "jaxdet.eval.cli"),
    ("data", "jaxdet.data.cli"),
    ("train", "jaxdet.train.cli"),
    ("export", f"{EXPORT_PACKAGE}.cli"),
    ("predict", f"{EXPORT_PACKAGE}.cli_predict"),
    ("convert", "jaxdet.convert.cli"),
)


def import_export_package():
  """The `jaxdet_export` package: `export/` next to this `jaxdet` in a source checkout, else the
  installed one.

  A checkout run with `PYTHONPATH=<checkout>` has no `jaxdet_export` folder (the name exists only
  once installed), and an editable install of another checkout must not shadow this one.
  """
  if EXPORT_PACKAGE in sys.modules:
    return sys.modules[EXPORT_PACKAGE]
  source = pathlib.Path(__file__).resolve().parents[1] / "export" / "__init__.py"
  if not source.is_file():
    return importlib.import_module(EXPORT_PACKAGE)
  spec = importlib.util.spec_from_file_location(EXPORT_PACKAGE, source,
                                                submodule_search_locations=[str(source.parent)])
  package = importlib.util.module_from_spec(spec)
  sys.modules[EXPORT_PACKAGE] = package
  try:
    spec.loader.exec_module(package)
  except BaseException:
    del sys.modules[EXPORT_PACKAGE]
    raise
  return package


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="jaxdet", description="Object detection in JAX: data, training, evaluation, weight "
                                 "conversion, ONNX export and prediction.",
      epilog="`jaxdet COMMAND --help` shows the options of a command.")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
  for name, module_name in _SUBCOMMANDS:
    if only is not None and name != only:
      sub.add_parser(name, help=SUMMARIES[name])
      continue
    if module_name.startswith(EXPORT_PACKAGE + "."):
      import_export_package()
    module = importlib.import_module(module_name)
    module.register(sub)
  return parser


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  command = next((a for a in argv if not a.startswith("-")), None)
  known = {name for name, _ in _SUBCOMMANDS}
  parser = build_parser(only=command if command in known else "__none__")
  args = parser.parse_args(argv)
  return int(args.func(args) or 0)


if __name__ == "__main__":
  sys.exit(main())
