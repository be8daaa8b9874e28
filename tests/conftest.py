"""Suite-wide settings: the hypothesis profile, and in CI a missing test dependency is an error.

Hypothesis: profile `ci` (derandomized: every CI run draws the same examples; failing examples
printed with their reproduction blob, no deadline) when the environment sets CI (CI sets CI=true)
or HYPOTHESIS_PROFILE=ci; otherwise hypothesis' default profile, which explores new examples on
every run. HYPOTHESIS_PROFILE=default explores under CI too.

Skips: `pytest.importorskip` lets a developer without the optional extras (torch/torchvision for
the oracle tests, pycocotools) run the rest. Under CI that skip becomes a failure: `make test`
installs every test dependency, so a missing one is a broken install, not a reason to skip.

Compilation cache: one JAX persistent compilation cache per test session (a fresh temporary
folder, removed at exit), shared by the xdist workers and by the subprocesses tests start (they
inherit the environment). Many tests compile the same program: the same tiny detector in the
contract, export and CLI tests, a fresh `jax.jit` of the same function, the same train step in
several processes. XLA's compile is keyed by the program, so the second compile is a disk read.
The cache starts empty every session, so a run never depends on an earlier one. A caller's own
JAX_COMPILATION_CACHE_DIR is kept (e.g. a persistent one on a developer machine);
JAXDET_TEST_COMPILATION_CACHE=0 turns the session cache off.

XLA optimization level: the suite compiles at `--xla_backend_optimization_level=0` (XLA's LLVM
backend unoptimized; the same programs and float semantics). Most tests run a program once or a
few times, so compile time dominates: measured on a fresh clone (2-core AMD EPYC), the whole
suite took 535 s of pytest time and 922 s of CPU instead of 685 s and 1277 s (BENCHMARKS.md). A
caller's own setting of that flag in XLA_FLAGS is kept.
"""

import atexit
import os
import shutil
import sys
import tempfile

import hypothesis
import pytest


def _env_flag(name):
  return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


IN_CI = _env_flag("CI")


def _share_compilation_cache():
  """Points JAX (in this process, the xdist workers and subprocesses) at one session cache."""
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):  # the caller's, or the xdist controller's
    return
  if os.environ.get("JAXDET_TEST_COMPILATION_CACHE", "1") == "0":  # off (to measure it)
    return
  path = tempfile.mkdtemp(prefix="jaxdet-tests-xla-cache-")
  atexit.register(shutil.rmtree, path, ignore_errors=True)  # the process that made it cleans up
  os.environ.update(JAX_COMPILATION_CACHE_DIR=path,
                    # Every program, however quick to compile: the tests' programs are small.
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  # JAX reads these variables when it is imported; a plugin may have imported it already.
  if "jax" in sys.modules:
    jax = sys.modules["jax"]
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


_share_compilation_cache()


def _compile_unoptimized():
  """Appends XLA's backend optimization level 0 to XLA_FLAGS (read when JAX starts its backend;
  the xdist workers and test subprocesses inherit it)."""
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_backend_optimization_level" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()


_compile_unoptimized()

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


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
  """xdist groups for `--dist loadgroup` (`make test`): one group per file, as `--dist loadfile`
  (a file's module fixtures are built once), except that a file's tests parametrized by a
  module-scoped fixture (one detector family of tests/models/test_contract.py) form one group per
  value, so that the two workers share a file of many families instead of one worker taking it.
  An explicit `@pytest.mark.xdist_group` is kept (its name must hold no "@" or "]")."""
  for item in items:
    if item.get_closest_marker("xdist_group"):
      continue
    group = item.nodeid.split("::")[0]
    params = getattr(getattr(item, "callspec", None), "params", {})
    for name, defs in sorted(item._fixtureinfo.name2fixturedefs.items()):
      if name in params and defs[-1].params is not None and defs[-1].scope != "function":
        # xdist splits the group off the node id at its last "@" after the last "]": neither
        # may appear in a group name.
        group += f"::{name}=" + "".join(c for c in str(params[name]) if c not in "[]@")
    item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):  # module-level importorskip
  outcome = yield
  _fail_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # importorskip inside a test
  outcome = yield
  _fail_in_ci(outcome.get_result())


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
  """TFDS data dir holding `shapes/tiny` (32/8/8 images), built once per test process and shared
  by every folder's tests (data, train, export)."""
  from jaxdet.data import shapes
  data_dir = tmp_path_factory.mktemp("tfds")
  shapes.build("tiny", data_dir=str(data_dir))
  return str(data_dir)


@pytest.fixture(scope="session")
def boxless_data_dir(tmp_path_factory):
  """TFDS data dir with two imported datasets whose images are 24 x 32 noise with masks:
  `boxless` (train 3 images, validation 2, not one box) and `boxless_val` (train 3 images, the
  second with a box; validation 2 images without boxes)."""
  import warnings
  import numpy as np
  from PIL import Image
  from jaxdet.data.importers import common
  root = tmp_path_factory.mktemp("boxless")
  data_dir = root / "tfds"
  for name, train_boxes in (("boxless", (0, 0, 0)), ("boxless_val", (0, 1, 0))):
    examples = []
    for i, (split, boxes) in enumerate([("train", n) for n in train_boxes] +
                                       [("validation", 0)] * 2):
      path, mask = root / f"{name}_{i}.png", root / f"{name}_{i}_mask.png"
      rng = np.random.default_rng(i)
      Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)
      Image.fromarray(rng.integers(0, 3, (24, 32), dtype=np.uint8)).save(mask)  # mode L
      examples.append(common.raw_example(
          path, i + 1, source="conftest", boxes=[(4, 4, 20, 16)] * boxes,
          labels=["a"] * boxes, split=split, mask=str(mask)))
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # "no boxes in split ...": that is the point
      common.import_dataset(("a", "b"), examples, name=name, data_dir=str(data_dir), masks=True,
                            log=lambda msg: None)
  return str(data_dir)
