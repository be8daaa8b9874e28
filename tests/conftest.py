"""Suite-wide settings: the hypothesis profile, and in CI a missing test dependency is an error.

Hypothesis: profile `ci` (derandomized: every CI run draws the same examples; failing examples
printed with their reproduction blob, no deadline) when the environment sets CI (CI sets CI=true)
or HYPOTHESIS_PROFILE=ci; otherwise hypothesis' default profile, which explores new examples on
every run. HYPOTHESIS_PROFILE=default explores under CI too.

Skips: `pytest.importorskip` lets a developer without the optional extras (torch/torchvision for
the oracle tests, pycocotools) run the rest. Under CI that skip becomes a failure: `make test`
installs every test dependency, so a missing one is a broken install, not a reason to skip.
"""

import os

import hypothesis
import pytest


def _env_flag(name):
  return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


IN_CI = _env_flag("CI")

hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True, deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or
                                 ("ci" if IN_CI else "default"))


def _missing_import(report):
  """The reason of a skip raised by `pytest.importorskip`, or None."""
  if not report.skipped or not isinstance(report.longrepr, tuple):
    return None
  reason = str(report.longrepr[2])
  return reason if "could not import" in reason else None


def _fail_in_ci(report):
  reason = _missing_import(report)
  if IN_CI and reason:
    report.outcome = "failed"
    report.longrepr = (f"{reason}\nCI runs every test: install the test dependencies "
                       "(`make test` installs .[dev,export,bench]).")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):  # module-level importorskip
  outcome = yield
  _fail_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # importorskip inside a test
  outcome = yield
  _fail_in_ci(outcome.get_result())
