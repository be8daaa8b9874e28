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


def test_help_gives_one_line_per_command_without_importing_them(capsys, monkeypatch):
  """Issue 28: `jaxdet --help` listed `(see jaxdet train --help)` for every command."""
  monkeypatch.setenv("COLUMNS", "80")
  assert set(cli.SUMMARIES) == {name for name, _ in cli._SUBCOMMANDS}
  with pytest.raises(SystemExit):
    cli.main(["--help"])
  lines = capsys.readouterr().out.splitlines()
  for name, summary in cli.SUMMARIES.items():
    assert len(summary) <= 62, summary  # fits beside the names in 80 columns
    assert any(line.split() == [name, *summary.split()] for line in lines), (name, lines)


def _subparsers(parser):
  """`{name: (help, parser)}` of a parser's subcommands."""
  import argparse
  actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
  return {c.dest: (c.help, a.choices[c.dest]) for a in actions for c in a._choices_actions}


@pytest.mark.parametrize("name", [name for name, _ in cli._SUBCOMMANDS])
def test_every_command_has_its_summary_as_help_and_a_description(name):
  """Each command registers `cli.SUMMARIES[name]` as its help and opens its own `--help` page
  with it; its subcommands (`data build`, `convert darknet`, ...) have a description too."""
  parser = cli.build_parser(only=name)
  help_text, command = _subparsers(parser)[name]
  assert help_text == cli.SUMMARIES[name]
  summary = cli.SUMMARIES[name]
  assert (command.description or "").startswith(f"{summary[0].upper()}{summary[1:]}"), (
      command.description)
  for action, (action_help, action_parser) in _subparsers(command).items():
    assert action_help and action_parser.description, f"jaxdet {name} {action}"


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
      if module.split(".")[0] in ("export", cli.EXPORT_PACKAGE):
        offenders.append(f"{path.relative_to(ROOT)} imports {module}")
  # jaxdet/cli.py reaches export/ only through importlib strings, never an import statement.
  assert not offenders, offenders


def test_export_package_is_jaxdet_export_and_the_old_name_says_so():
  """Issue 10: `export/` is imported as `jaxdet_export` (installed through setup.py's package-dir
  mapping); the old generic name still works from a checkout, with a warning naming the new."""
  package = cli.import_export_package()
  assert package.__name__ == "jaxdet_export"
  assert pathlib.Path(package.__file__).resolve() == ROOT / "export" / "__init__.py"
  assert package.Detector.__module__ == "jaxdet_export.runtime"
  assert "jaxdet_export" in (ROOT / "setup.py").read_text()
  proc = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", "import export"],
                        capture_output=True, text=True, timeout=120, cwd=ROOT,
                        env={"PYTHONPATH": str(ROOT), "PATH": ""})
  assert proc.returncode != 0 and "jaxdet_export" in proc.stderr.strip().splitlines()[-1]
