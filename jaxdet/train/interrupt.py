"""Ctrl-C / SIGTERM during training: the one place that decides how a run stops on a signal.

Why not Python's default KeyboardInterrupt: it is raised asynchronously wherever the main thread
happens to be. Inside an XLA compile (the first step, or the state initialization) it unwinds
through the compiler while its threads keep running, and the interpreter's teardown then crashes
with a segmentation fault (rc 139). Here a signal only sets a flag; the trainer polls it at safe
points (after opening the data, after the compile, between steps, after a checkpoint save), so
whatever is running finishes first and the run ends with the usual message and exit code 130.

A second signal while the first is pending quits at once (`os._exit(130)`): checkpoints are
written to a temporary folder and renamed when complete (Orbax), so even then the workdir holds
only whole checkpoints and the same command resumes.
"""

import contextlib
import os
import signal
import sys

EXIT_CODE = 130  # 128 + SIGINT, what shells report for Ctrl-C
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(RuntimeError):
  """SIGINT/SIGTERM arrived; the run stopped at a safe point (the message says what was saved)."""


class StopRequest:
  """The pending signal name (`"SIGINT"`) or None; truthy once a signal arrived."""

  def __init__(self):
    self.signal: str | None = None

  def __bool__(self) -> bool:
    return self.signal is not None

  def raise_if_requested(self, what: str) -> None:
    """Raises `TrainingInterrupted(f"{signal} {what}")` when a signal is pending."""
    if self.signal is not None:
      raise TrainingInterrupted(f"{self.signal} {what}")


def _write_stderr(text: str) -> None:
  # os.write: a signal handler may run while sys.stderr is mid-write (reentrant call error).
  with contextlib.suppress(OSError):
    os.write(sys.stderr.fileno() if hasattr(sys.stderr, "fileno") else 2, text.encode())


@contextlib.contextmanager
def deferred_stop(*, prog: str = "jaxdet train"):
  """Within the block, SIGINT/SIGTERM set the yielded `StopRequest` instead of raising.

  The first signal prints one line saying the run will stop at the next safe point; a second one
  exits the process at once with code 130. Outside the main thread (no handlers can be
  installed) the block runs with the default behaviour.

  Yields:
    `StopRequest`, to be polled with `raise_if_requested(what)`.
  """
  stop = StopRequest()

  def handler(signum, frame):
    del frame
    name = signal.Signals(signum).name
    if stop.signal is not None:
      _write_stderr(f"\n{prog}: second {name}: quitting now (the workdir keeps its last "
                    f"complete checkpoint)\n")
      with contextlib.suppress(Exception):
        sys.stdout.flush()
      os._exit(EXIT_CODE)
    stop.signal = name
    _write_stderr(f"\n{prog}: {name} received: stopping at the next safe point (after the "
                  f"current compile, step or save); press Ctrl-C again to quit at once\n")

  previous = {}
  try:
    for sig in SIGNALS:
      previous[sig] = signal.signal(sig, handler)
  except ValueError:  # Not the main thread: keep the default behaviour.
    pass
  try:
    yield stop
  finally:
    for sig, old in previous.items():
      signal.signal(sig, old)
