"""Multi-process runs with `jax.distributed`: launch settings, start-up, process 0 helpers, faults.

A run is started in one of three ways (first match wins, per value):
  1. flags `--coordinator HOST:PORT --num-processes N --process-id I`;
  2. the environment `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`;
  3. JAX's cluster auto-detection (SLURM, Open MPI, TPU pods), which fills whatever 1-2 left unset.
Without any of them the run is a plain single process. On CPU the collectives are JAX's gloo
ones, so the same commands run on a laptop.

Faults: JAX's own failure handling ends the survivors with an abort after its heartbeat timeout,
without saying who failed. `start_watchdog` adds a thread that polls the coordination service
(`get_live_nodes` and the `jaxdet/failed/` keys that `report_failure` writes) and ends this process
with a one-line message naming the failed process, so nobody hangs.
"""

import argparse
import dataclasses
import os
import re
import sys
import threading
import time
from typing import Mapping

import jax
import numpy as np

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
# Seconds without a heartbeat after which JAX (and the watchdog) declare a process dead.
ENV_HEARTBEAT = "JAXDET_HEARTBEAT_TIMEOUT"
DEFAULT_HEARTBEAT_S = 30
_FAILED_DIR = "jaxdet/failed/"
_ALIVE_DIR = "jaxdet/alive/"
_last_beat: dict[int, tuple[str, float]] = {}  # process -> (last beat seen, when it changed)
_POLL_S = 1.0
# Exit status of a process stopped because another one failed.
PEER_FAILED_EXIT = 3


class LaunchError(ValueError):
  """Incomplete or inconsistent multi-process settings; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Launch:
  """Resolved multi-process settings.

  Attributes:
    coordinator: `HOST:PORT` of process 0's coordination service (None: auto-detected).
    num_processes: N (None: auto-detected).
    process_id: this process, in [0, N) (None: auto-detected).
    source: where the settings came from: "flags", "environment", "flags+environment" or
      "cluster" (auto-detection).
  """
  coordinator: str | None
  num_processes: int | None
  process_id: int | None
  source: str


def add_launch_flags(parser: argparse.ArgumentParser) -> None:
  """Adds `--coordinator`, `--num-processes` and `--process-id` to a subcommand's parser."""
  group = parser.add_argument_group(
      "multi-process runs", "One process per machine (or per accelerator); all processes get "
      "the same command with their own --process-id. Defaults: JAX_COORDINATOR_ADDRESS, "
      "JAX_NUM_PROCESSES, JAX_PROCESS_ID, then cluster auto-detection (SLURM, Open MPI, TPU).")
  group.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                     help="address of process 0, reachable from every process")
  group.add_argument("--num-processes", metavar="N", default=None, help="number of processes")
  group.add_argument("--process-id", metavar="I", default=None,
                     help="this process's index, 0 <= I < N (process 0 writes the outputs)")


def _int_setting(value, name: str) -> int | None:
  if value is None or value == "":
    return None
  try:
    return int(str(value).strip())
  except ValueError:
    raise LaunchError(f"{name} must be an integer, got {value!r}") from None


def _detected_cluster() -> str | None:
  """Name of the cluster environment JAX would auto-detect here, or None."""
  try:
    from jax._src import clusters  # pylint: disable=g-import-not-at-top
    for env in clusters.ClusterEnv._cluster_types:  # pylint: disable=protected-access
      if not env.opt_in_only_method and env.is_env_present():
        return env.__name__
  except Exception:  # pylint: disable=broad-except
    pass  # A JAX without this (private) registry: no auto-detection.
  return None


def resolve_launch(coordinator=None, num_processes=None, process_id=None, *,
                   environ: Mapping[str, str] | None = None,
                   cluster: str | None = "detect") -> Launch | None:
  """The multi-process settings from flags, else the environment, else cluster auto-detection.

  Args:
    coordinator, num_processes, process_id: flag values (str/int or None when not given).
    environ: the environment (default `os.environ`).
    cluster: name of a detected cluster environment, None for none; "detect" asks JAX.

  Returns:
    The settings, or None for a single-process run (nothing given, or N = 1).

  Raises:
    LaunchError: some values given but not all (and no cluster to fill the rest), a malformed
      address, N < 1, or I outside [0, N).
  """
  environ = os.environ if environ is None else environ
  named = (("--coordinator", ENV_COORDINATOR, coordinator),
           ("--num-processes", ENV_NUM_PROCESSES, num_processes),
           ("--process-id", ENV_PROCESS_ID, process_id))
  values, sources, missing = [], set(), []
  for flag, env, value in named:
    if value is not None and str(value) != "":
      values.append(value)
      sources.add("flags")
    elif environ.get(env, "") != "":
      values.append(environ[env])
      sources.add("environment")
    else:
      values.append(None)
      missing.append(f"{flag} (or {env})")
  addr = values[0]
  n = _int_setting(values[1], "--num-processes/JAX_NUM_PROCESSES")
  i = _int_setting(values[2], "--process-id/JAX_PROCESS_ID")
  if addr is not None and not re.fullmatch(r"\S+:\d{1,5}", str(addr)):
    raise LaunchError(f"--coordinator/JAX_COORDINATOR_ADDRESS must be HOST:PORT, got {addr!r}")
  if n is not None and n < 1:
    raise LaunchError(f"--num-processes/JAX_NUM_PROCESSES must be >= 1, got {n}")
  if n is not None and i is not None and not 0 <= i < n:
    raise LaunchError(f"--process-id/JAX_PROCESS_ID must be in [0, {n}) for {n} processes, "
                      f"got {i}")
  if n == 1 and i in (None, 0):
    return None
  if not missing:
    return Launch(str(addr), n, i, "+".join(sorted(sources, reverse=True)))
  if cluster == "detect":
    cluster = _detected_cluster()
  if cluster is not None:
    return Launch(addr, n, i, "cluster")
  if len(missing) == 3:
    return None
  given = [f"{flag} (or {env})" for (flag, env, _), v in zip(named, values) if v is not None]
  raise LaunchError(f"incomplete multi-process settings: {', '.join(given)} given but "
                    f"{' and '.join(missing)} missing; give all three (or none)")


def heartbeat_timeout_s() -> int:
  """Seconds of silence after which a process counts as dead (`JAXDET_HEARTBEAT_TIMEOUT`)."""
  value = _int_setting(os.environ.get(ENV_HEARTBEAT), ENV_HEARTBEAT)
  return DEFAULT_HEARTBEAT_S if value is None else max(value, 2)


def initialize(launch: Launch | None) -> None:
  """Starts `jax.distributed` (no-op for None or when already started), then the watchdog.

  Must run before anything touches a JAX backend. Selects gloo collectives on CPU.

  Raises:
    LaunchError: the coordinator could not be reached or the settings were refused.
  """
  if launch is None or jax.distributed.is_initialized():
    return
  # Gloo is JAX's cross-process collective library for CPU; set it explicitly since older
  # releases defaulted to none. It does not affect GPU/TPU collectives (NCCL, ICI).
  if not os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  heartbeat = heartbeat_timeout_s()
  try:
    jax.distributed.initialize(
        coordinator_address=launch.coordinator, num_processes=launch.num_processes,
        process_id=launch.process_id, initialization_timeout=int(
            os.environ.get("JAXDET_INIT_TIMEOUT", "300")),
        heartbeat_timeout_seconds=heartbeat,
        # At a normal exit the others wait for process 0's last writes (predictions.png); after
        # a failure `exit_after_failure` skips this barrier.
        shutdown_timeout_seconds=300)
  except (ValueError, TypeError, RuntimeError) as e:
    where = launch.coordinator or "the auto-detected coordinator"
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise LaunchError(f"could not start process {launch.process_id} of {launch.num_processes} "
                      f"with coordinator {where}: {first}") from None
  start_watchdog()


def initialize_from_args(args: argparse.Namespace) -> None:
  """`initialize(resolve_launch(...))` for a namespace made with `add_launch_flags`."""
  initialize(resolve_launch(getattr(args, "coordinator", None),
                            getattr(args, "num_processes", None),
                            getattr(args, "process_id", None)))


def is_main() -> bool:
  """True on process 0, which alone writes logs, plots and reports."""
  return jax.process_index() == 0


def process_label() -> str:
  return f"process {jax.process_index()} of {jax.process_count()}"


# ---- faults ----------------------------------------------------------------------------------

def _client():
  from jax._src import distributed as jd  # pylint: disable=g-import-not-at-top
  return jd.global_state.client


def _peer_problem(client, n: int, me: int) -> str | None:
  """A one-line description of another process's failure, or None while all look healthy."""
  try:
    failed = client.key_value_dir_get(_FAILED_DIR)
  except Exception as e:  # pylint: disable=broad-except
    if me == 0:
      return None
    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    return f"lost the coordinator (process 0) ({first})"
  for key, message in sorted(failed):
    pid = int(key.rsplit("/", 1)[-1])
    if pid != me:
      return f"process {pid} of {n} failed: {message}"
  try:
    live = set(client.get_live_nodes(list(range(n))))
    beats = client.key_value_dir_get(_ALIVE_DIR)
  except Exception:  # pylint: disable=broad-except
    return None
  now = time.monotonic()
  for key, value in beats:
    pid = int(key.rsplit("/", 1)[-1])
    if _last_beat.get(pid, (None,))[0] != value:
      _last_beat[pid] = (value, now)
  # JAX's service aborts every process as soon as its own heartbeat timeout expires, without
  # naming anyone; the watchdog's own beats let it name the silent process a little earlier.
  silent = {pid for pid, (_, t) in _last_beat.items() if pid != me and now - t > _silence_s()}
  dead = sorted((set(range(n)) - live) | silent)
  if dead:
    return f"process {', '.join(map(str, dead))} of {n} stopped responding (killed or crashed?)"
  return None


def _silence_s() -> float:
  """Seconds without a watchdog beat after which a process counts as dead: well before JAX's
  heartbeat timeout (which aborts everyone), yet long enough not to mistake a busy process.

  JAX's service can declare a process dead before its full timeout has passed since the kill
  (its last heartbeat came earlier): at 0.6 x the timeout, CI once saw JAX's anonymous abort win
  the race. 0.3 x stays below half the timeout."""
  return max(0.3 * heartbeat_timeout_s(), 3.0)


def _stop_now(problem: str, me: int, n: int) -> None:
  sys.stdout.flush()
  print(f"jaxdet: error: {problem}; stopping process {me} of {n}", file=sys.stderr, flush=True)
  # Skip the atexit `jax.distributed.shutdown()`: its barrier would wait for the dead process.
  os._exit(PEER_FAILED_EXIT)  # pylint: disable=protected-access


_watchdog_started = False


def start_watchdog(poll_s: float = _POLL_S) -> None:
  """Starts (once) a daemon thread ending this process when another one fails.

  Every `poll_s` seconds it writes its own beat to the coordination service's key-value store
  and reads the failure notes (`report_failure`), the others' beats and JAX's live-node list: an
  exception elsewhere is noticed within a second, a killed process after `_silence_s()` (0.3 x
  the heartbeat timeout, before JAX's own timeout aborts everyone without naming anyone).
  """
  global _watchdog_started
  if _watchdog_started or jax.process_count() < 2:
    return
  _watchdog_started = True
  client, n, me = _client(), jax.process_count(), jax.process_index()
  done = threading.Event()

  def watch():
    beat = 0
    while not done.wait(poll_s):
      beat += 1
      try:
        client.key_value_set(f"{_ALIVE_DIR}{me}", str(beat), allow_overwrite=True)
      except Exception:  # pylint: disable=broad-except
        pass  # The coordinator is gone: `_peer_problem` says so.
      problem = _peer_problem(client, n, me)
      if problem and not done.is_set():
        _stop_now(problem, me, n)

  thread = threading.Thread(target=watch, name="jaxdet-watchdog", daemon=True)
  thread.start()

  def stop_watching():
    done.set()
    thread.join(timeout=5 * poll_s)
  import atexit  # pylint: disable=g-import-not-at-top
  # Runs before JAX's own exit handler (registered earlier; atexit is last-in, first-out), so
  # the thread never polls a coordination service that is shutting down.
  atexit.register(stop_watching)


def _is_collective_error(error: BaseException) -> bool:
  text = str(error)
  return any(s in text for s in ("Gloo", "gloo", "NCCL", "Connection closed", "Connection reset",
                                 "collective", "DEADLINE_EXCEEDED", "UNAVAILABLE"))


def report_failure(error: BaseException, message: str | None = None) -> None:
  """Tells the other processes that this one failed (call before exiting on an exception).

  An error raised inside a collective usually means that another process died: then this waits
  up to the heartbeat timeout for the watchdog to name that process (and exit) instead.
  Harmless (a no-op) in a single-process run.
  """
  if not jax.distributed.is_initialized() or jax.process_count() < 2:
    return
  client, n, me = _client(), jax.process_count(), jax.process_index()
  if _is_collective_error(error):
    deadline = time.monotonic() + heartbeat_timeout_s() + 3 * _POLL_S
    while time.monotonic() < deadline:
      problem = _peer_problem(client, n, me)
      if problem:
        _stop_now(problem, me, n)
      time.sleep(_POLL_S)
  text = (message or f"{type(error).__name__}: {error}").strip().splitlines()
  try:
    client.key_value_set(f"{_FAILED_DIR}{me}", (text[0] if text else "error")[:300])
    time.sleep(3 * _POLL_S)  # Let the others read it before the coordinator (maybe us) goes.
  except Exception:  # pylint: disable=broad-except
    pass


def exit_after_failure(code: int) -> None:
  """Ends a failed multi-process run at once: `jax.distributed.shutdown()` would wait for the
  others at its barrier. Returns (does nothing) in a single-process run."""
  if jax.distributed.is_initialized() and jax.process_count() > 1:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access


# ---- agreement between processes -------------------------------------------------------------

_pending_signal: list[str] = []
_taken_over: list = []  # the flag of the run whose signals `agree_on_stop` routes


def _take_over_stop_signals() -> None:
  """Routes SIGINT/SIGTERM into `_pending_signal` (the trainer restores its handlers on exit)."""
  import signal  # pylint: disable=g-import-not-at-top

  def handler(signum, frame):
    del frame
    _pending_signal.append(signal.Signals(signum).name)
  try:
    for sig in (signal.SIGINT, signal.SIGTERM):
      signal.signal(sig, handler)
  except ValueError:  # Not the main thread.
    pass


def agree_on_stop(stop, step: int) -> None:
  """Sets `stop["signal"]` to the stop signal seen by any process, the same on all of them.

  SIGINT/SIGTERM arrive at one process (Ctrl-C on process 0); every process must stop, and
  checkpoint, at the same step. A signal arriving while the processes agree must not change
  one process's decision only, so from the first call on, signals go to a pending list that each
  call empties before one tiny collective. JAX's preemption service may catch SIGTERM before
  Python does: its agreed sync point counts as SIGTERM. No-op in a single-process run.

  Args:
    stop: the trainer's flag: a dict `{"signal": name or None}` or an object with a `signal`
      attribute (`jaxdet.train.interrupt.StopRequest`), updated in place.
    step: the step just finished (the same on every process).
  """
  if jax.process_count() < 2:
    return
  import signal  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  is_dict = isinstance(stop, dict)

  def set_signal(value):
    if is_dict:
      stop["signal"] = value
    else:
      stop.signal = value
  if not _taken_over or _taken_over[0] is not stop:  # first call of this run
    _taken_over[:] = [stop]
    del _pending_signal[:]
    current = stop.get("signal") if is_dict else getattr(stop, "signal", None)
    if current:
      _pending_signal.append(current)
    _take_over_stop_signals()
  local = _pending_signal[0] if _pending_signal else None
  del _pending_signal[:1]
  from jax._src import distributed as jd  # pylint: disable=g-import-not-at-top
  if jd.global_state.preemption_sync_manager is not None:
    if multihost_utils.reached_preemption_sync_point(int(step)):  # True on all at this step
      set_signal("SIGTERM (JAX preemption notice)")
      return
  code = signal.Signals[local].value if local in signal.Signals.__members__ else 0
  codes = np.asarray(multihost_utils.process_allgather(np.int32(code))).reshape(-1)
  senders = np.flatnonzero(codes)
  if not len(senders):
    set_signal(None)
    return
  first = int(senders[0])
  set_signal(f"{signal.Signals(int(codes[first])).name} on process {first}")


# ---- data ------------------------------------------------------------------------------------

def local_rows(global_batch: int, mesh=None) -> tuple[int, int]:
  """`(start, stop)`: the rows of a `[global_batch, ...]` batch sharded over `mesh` (default: all
  devices) that this process's devices hold, i.e. what it passes to
  `jax.make_array_from_process_local_data`."""
  from jaxdet.train import sharding  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh() if mesh is None else mesh
  index_map = sharding.batch_sharding(mesh).addressable_devices_indices_map((global_batch,))
  starts = [s[0].start or 0 for s in index_map.values()]
  stops = [global_batch if s[0].stop is None else s[0].stop for s in index_map.values()]
  lo, hi = min(starts), max(stops)
  if hi - lo != sum(b - a for a, b in {(a, b) for a, b in zip(starts, stops)}):
    raise ValueError(f"this process's rows of the batch are not contiguous: {sorted(starts)}")
  return lo, hi


def train_input_args(global_batch: int) -> dict:
  """`input_pipeline` arguments for this process's rows of every global training batch.

  Every process reads the whole split (one shard) and keeps its rows of each global batch, so
  the global batch of step s is the single-process one whatever the process count (exact resume
  with another count too).
  """
  if jax.process_count() < 2:
    return {"batch_size": global_batch, "shard_index": 0, "shard_count": 1}
  return {"batch_size": global_batch, "shard_index": 0, "shard_count": 1,
          "batch_rows": local_rows(global_batch)}


def run_guarded(fn, *args, quiet: tuple[type, ...] = (), **kwargs):
  """`fn(*args, **kwargs)`; when it raises in a multi-process run, tells the other processes
  (`report_failure`) and makes this process's exit skip JAX's shutdown barrier.

  Exceptions of the `quiet` types (raised by every process at once, e.g. an agreed interrupt)
  are passed on without a report.
  """
  try:
    return fn(*args, **kwargs)
  except quiet:
    raise
  except BaseException as e:
    if jax.distributed.is_initialized() and jax.process_count() > 1:
      report_failure(e)
      import atexit  # pylint: disable=g-import-not-at-top
      # Registered after JAX's own handler, so it runs first (atexit is last-in, first-out).
      atexit.register(exit_after_failure, 1)
    raise


class NullWriter:
  """Stands in for `MetricWriter` on processes other than 0."""

  def write(self, step, split, scalars):
    del step, split, scalars

  def close(self):
    pass


def prepare_data_once(dataset: str, data_dir: str | None) -> None:
  """Builds an embedded dataset (`shapes`) on process 0 only, then lets the others go on.

  Every process opens the dataset; without this, all of them would build `shapes` into the same
  (shared) data dir at once and race on its final rename. A process whose machine has its own
  data dir still builds its copy after the barrier, when it opens the data. No-op with one
  process.
  """
  if jax.process_count() < 2:
    return
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  if is_main():
    from jaxdet.data import sources  # pylint: disable=g-import-not-at-top
    sources.builder(dataset, data_dir)  # builds `shapes` when absent; opens anything else
  multihost_utils.sync_global_devices("jaxdet: dataset prepared by process 0")


def local_copy(tree):
  """`tree` with arrays that span several processes copied onto this process's first device.

  Per-process work (evaluation, drawing) must not run a global computation, which would wait
  for processes that are not running it. Single-process trees are returned unchanged.
  """
  leaves = jax.tree.leaves(tree)
  if not any(isinstance(x, jax.Array) and not x.is_fully_addressable for x in leaves):
    return tree
  return jax.device_put(jax.device_get(tree), jax.local_devices()[0])
