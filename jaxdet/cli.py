"""The `jaxdet` command line. Each stage registers its own subcommands.

Subcommand modules expose ``register(subparsers)``; each registered parser sets
``func(args) -> int``. Modules are imported lazily so ``jaxdet --help`` is fast and a missing
optional extra (e.g. ``export``) only fails the subcommand that needs it.
"""

import argparse
import importlib
import sys

# (subcommand, module that registers it)
_SUBCOMMANDS = (
    ("evaluate", "jaxdet.eval.cli"),
    ("data", "jaxdet.data.cli"),
    ("train", "jaxdet.train.cli"),
    ("export", "export.cli"),
    ("predict", "export.cli_predict"),
    ("convert", "jaxdet.convert.cli"),
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="jaxdet", description="Object detection in JAX.")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
  for name, module_name in _SUBCOMMANDS:
    if only is not None and name != only:
      sub.add_parser(name, help=f"(see `jaxdet {name} --help`)")
      continue
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
