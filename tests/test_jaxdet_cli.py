"""The top-level CLI and the package boundary (jaxdet/ never imports export/)."""

import ast
import pathlib
import subprocess
import sys

import pytest

from jaxdet import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_help_lists_every_subcommand(capsys):
  with pytest.raises(SystemExit) as exc:
    cli.main(["--help"])
  assert exc.value.code == 0
  out = capsys.readouterr().out
  for name, _ in cli._SUBCOMMANDS:
    assert name in out


def test_unknown_subcommand_is_a_clear_error(capsys):
  with pytest.raises(SystemExit) as exc:
    cli.main(["no-such-command"])
  assert exc.value.code == 2
  assert "invalid choice" in capsys.readouterr().err


def test_console_script_runs():
  exe = pathlib.Path(sys.executable).parent / "jaxdet"
  cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "jaxdet"]
  proc = subprocess.run(cmd + ["--help"], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert "evaluate" in proc.stdout


def _imported_modules(path: pathlib.Path):
  tree = ast.parse(path.read_text(), filename=str(path))
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      yield node.module


def test_library_never_imports_export_package():
  offenders = []
  for path in (ROOT / "jaxdet").rglob("*.py"):
    for module in _imported_modules(path):
      if module == "export" or module.startswith("export."):
        offenders.append(f"{path.relative_to(ROOT)} imports {module}")
  # jaxdet/cli.py reaches export/ only through importlib strings, never an import statement.
  assert not offenders, offenders
