"""Shared error handling of the `jaxdet export` / `jaxdet predict` subcommands."""

import sys


def error(command, message):
  """Prints ``jaxdet COMMAND: error: MESSAGE`` on stderr and returns exit code 1."""
  print(f"jaxdet {command}: error: {message}", file=sys.stderr)
  return 1


def guarded(command, fn):
  """Wraps ``fn(args) -> int``: any exception becomes one line on stderr and exit code 1."""
  def run(args):
    try:
      return fn(args)
    except KeyboardInterrupt:
      return error(command, "interrupted")
    except Exception as e:  # pylint: disable=broad-except  (the CLI never shows a traceback)
      text = str(e).strip()
      msg = text.splitlines()[0] if text else type(e).__name__
      known = isinstance(e, (ValueError, OSError, KeyError))
      return error(command, msg if known else f"{type(e).__name__}: {msg}")
  return run


def positive_int(text):
  """argparse type: an integer >= 1."""
  import argparse  # pylint: disable=g-import-not-at-top
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
  return value


def unit_float(text):
  """argparse type: a float in [0, 1]."""
  import argparse  # pylint: disable=g-import-not-at-top
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
  if not 0.0 <= value <= 1.0:
    raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
  return value
