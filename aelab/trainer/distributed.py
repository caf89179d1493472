"""Runs of several processes (hosts): jax.distributed from the flags or the cluster, stops that
every process agrees on, and a watchdog that ends the run when a peer dies instead of hanging.

    python -m aelab.run ... --coordinator_address=HOST:PORT --num_processes=N --process_id=I

Without those flags, jax.distributed.initialize() detects the cluster itself on a Cloud TPU pod
slice, under SLURM (more than one task) and under Open MPI (more than one rank), or anywhere with
AELAB_DISTRIBUTED=1 (and JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID).

The processes wait at most --coordinator_timeout seconds for each other; past it (a wrong address,
a process that never started) or on SIGTERM/SIGINT meanwhile, a process ends with one line
(exit 2, or 75 when stopped), never in jax's own fatal abort.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import sys
import threading
import time

from aelab import errors
from aelab.errors import AelabError
from aelab.trainer import signals  # standard library only

_STOPS = (None, 'should_stop', 'SIGINT', 'SIGTERM')  # agreed on by the highest code
_ALIVE = 'aelab/alive/'
_PROBE_S = 0.5  # how long the line of a timed-out join waits to see whether the coordinator answers
# What a collective's error says when a peer is gone (gloo on CPUs, NCCL on GPUs).
_LOST_PEER_WORDS = ('Gloo', 'NCCL', 'Connection reset', 'Connection closed', 'Broken pipe')


def cluster() -> str | None:
  """The cluster this process is one task of, when jax.distributed can detect it."""
  env = os.environ
  if env.get('AELAB_DISTRIBUTED', '') not in ('', '0'):
    return 'AELAB_DISTRIBUTED'
  if 'SLURM_JOB_ID' in env and int(env.get('SLURM_NTASKS', '1') or 1) > 1:
    return 'SLURM'
  if int(env.get('OMPI_COMM_WORLD_SIZE', '1') or 1) > 1:
    return 'Open MPI'
  if ',' in env.get('TPU_WORKER_HOSTNAMES', ''):
    return 'TPU pod'
  return None


def check_flags(address: str, num_processes: int, process_id: int) -> bool:
  """Whether the flags ask for a multi-process run (AelabError when they are inconsistent)."""
  given = [bool(address), num_processes > 0, process_id >= 0]
  if not any(given):
    return False
  if not all(given):
    raise AelabError('--coordinator_address, --num_processes and --process_id go together: give '
                     'all three (e.g. --coordinator_address=localhost:1234 --num_processes=2 '
                     '--process_id=0), or none to run alone or let the cluster say')
  host, _, port = address.rpartition(':')
  if not host or not port.isdigit() or not 0 < int(port) < 65536:
    raise AelabError(f'--coordinator_address={address!r} must be HOST:PORT with a port in '
                     '[1, 65535], e.g. 10.0.0.1:1234')
  if not 0 <= process_id < num_processes:
    raise AelabError(f'--process_id={process_id} must be in [0, {num_processes - 1}] for '
                     f'--num_processes={num_processes}')
  return True


def initialize(address: str = '', num_processes: int = 0, process_id: int = -1,
               peer_timeout: int = 30, coordinator_timeout: int = 60) -> None:
  """Joins the run's processes (a no-op for a run of one process), waiting for them at most
  `coordinator_timeout` seconds, then starts the watchdog."""
  import jax
  explicit = check_flags(address, num_processes, process_id)
  if not explicit and cluster() is None:
    return
  if peer_timeout < 5:
    raise AelabError(f'--peer_timeout={peer_timeout} must be at least 5 seconds')
  if coordinator_timeout < 1:
    raise AelabError(f'--coordinator_timeout={coordinator_timeout} must be at least 1 second')
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')  # CPU collectives across hosts
  # SIGTERM stays with aelab/trainer/signals.py, whose stop requests agree() shares at every
  # block (jax's preemption notifier would take it, and its sync point can be missed).
  jax.config.update('jax_enable_preemption_service', False)
  kwargs = dict(coordinator_address=address, num_processes=num_processes,
                process_id=process_id) if explicit else {}
  # jax's own heartbeat is the backstop behind the watchdog below
  error = _join(dict(kwargs, heartbeat_timeout_seconds=peer_timeout + 30), coordinator_timeout)
  if isinstance(error, AelabError):
    raise error
  if error is not None:  # jax's own, e.g. a cluster it cannot read
    raise AelabError(f'could not join the run\'s processes ({_first_line(error)}); start every '
                     'process with the same --coordinator_address and --num_processes') from None
  if jax.process_count() > 1:
    Watchdog(peer_timeout).start()


def _join(kwargs: dict, timeout: int) -> BaseException | None:
  """jax.distributed.initialize(**kwargs), bounded; returns its error, if any. jax's own wait for
  the other processes ignores SIGTERM and ends in a fatal abort with a C++ stack trace (exit
  134), so it runs in a daemon thread with a longer timeout than ours, while this thread waits at
  most `timeout` seconds, watching for SIGTERM/SIGINT. On either, one line and os._exit: before
  jax can abort, and without the shutdown handshake it would try with a silent coordinator."""
  import jax
  outcome: list[BaseException | None] = []

  def join() -> None:
    try:
      if 'coordinator_address' in kwargs:
        _resolve(kwargs['coordinator_address'], serve=kwargs['process_id'] == 0)
      jax.distributed.initialize(**kwargs, initialization_timeout=timeout + 30)
      outcome.append(None)
    except BaseException as e:  # handed to the main thread
      outcome.append(e)

  thread = threading.Thread(target=join, name='aelab-join', daemon=True)
  thread.start()
  address = kwargs.get('coordinator_address')
  deadline = time.monotonic() + max(timeout - _PROBE_S, _PROBE_S)  # the line probes the address
  while thread.is_alive():
    thread.join(0.1)
    if signals.received() and thread.is_alive():
      _leave(signals.INTERRUPTED, f'aelab: stopped by {signals.received()} while waiting for the '
             f'run\'s processes to meet{f" at {address}" if address else ""}; nothing to save '
             'yet. Rerun the same command to resume.')
    if time.monotonic() > deadline and thread.is_alive():
      sys.stdout.flush()
      errors.exit_with(_not_met(kwargs, timeout), 2, now=True)
  return outcome[0]


def _resolve(address: str, serve: bool) -> None:
  """AelabError at once when the coordinator's host name does not resolve or, on process 0 (which
  serves it), when its port is taken (gRPC would log its own error line before jax's)."""
  host, _, port = address.rpartition(':')
  try:
    socket.getaddrinfo(host.strip('[]'), int(port), type=socket.SOCK_STREAM)
  except OSError as e:
    raise AelabError(f'--coordinator_address={address}: unknown host {host!r} '
                     f'({e.strerror or e}); give the host name or IP address of process 0') \
        from None
  if not serve:
    return
  try:  # where jax's coordinator binds: [::]:port
    s, anywhere = socket.socket(socket.AF_INET6, socket.SOCK_STREAM), '::'
  except OSError:  # a host without IPv6
    s, anywhere = socket.socket(socket.AF_INET, socket.SOCK_STREAM), ''
  with s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      s.bind((anywhere, int(port)))
    except OSError as e:
      raise AelabError(f'--coordinator_address={address}: port {port} is taken on this host, '
                       f'process 0 ({e.strerror or e}); choose a free port') from None


def _not_met(kwargs: dict, timeout: int) -> str:
  """Why the processes did not meet in time, for the one line: a coordinator that does not answer,
  or processes that did not all join."""
  address, n = kwargs.get('coordinator_address'), kwargs.get('num_processes')
  flag = f'(--coordinator_timeout={timeout})'
  if not address:
    return (f'the cluster\'s processes did not meet within {timeout} s {flag}: check that every '
            'task started, or raise --coordinator_timeout')
  why = f'not all {n} processes joined process 0' if kwargs['process_id'] == 0 else _probe(address)
  return (f'the run\'s processes did not meet at {address} within {timeout} s {flag}: {why}; '
          'start every process with the same --coordinator_address (process 0\'s HOST:PORT) and '
          '--num_processes, or raise --coordinator_timeout')


def _probe(address: str) -> str:
  host, _, port = address.rpartition(':')
  try:
    with socket.create_connection((host.strip('[]'), int(port)), timeout=_PROBE_S):
      return 'the coordinator answers, but not every process joined'
  except OSError as e:
    return f'nothing answers there ({e.strerror or e or type(e).__name__})'


def _leave(code: int, line: str) -> None:
  print(line, file=sys.stderr, flush=True)
  sys.stdout.flush()
  os._exit(code)


def _first_line(e: BaseException) -> str:
  return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def agree(reason: str | None) -> str | None:
  """The stop request every process acts on, asked at the same points by all of them: the
  strongest one any process received (a SIGTERM sent to one process stops all of them at the
  same step)."""
  import jax
  if jax.process_count() == 1:
    return reason
  import numpy as np
  from jax.experimental import multihost_utils
  codes = multihost_utils.process_allgather(np.int32(_STOPS.index(reason)))
  return _STOPS[int(np.max(codes))]


@contextlib.contextmanager
def exit_if_peer_lost():
  """In a run of several processes, a collective that fails because a peer died (gloo: 'Connection
  reset by peer'; NCCL alike) ends this process with one line and exit 75, as the watchdog does,
  before any cleanup runs collectives with the dead peer (jax's shutdown barrier would end it with
  a fatal error and a stack trace). The watchdog gets its timeout first, to name the peer."""
  try:
    yield
  except Exception as e:
    import jax
    if jax.process_count() == 1 or not isinstance(e, jax.errors.JaxRuntimeError) or \
        not any(w in str(e) for w in _LOST_PEER_WORDS):
      raise
    time.sleep((Watchdog.running_timeout or 0) + 2)  # the watchdog may speak
    _exit(f'a collective with the other processes failed ({_first_line(e)}): one of them died '
          'or was killed')


def local(tree):
  """`tree` itself in a run of one process; in a run of several, host numpy copies of its arrays
  however they are split over the processes (a collective: every process calls it), for work
  that one process does on its own devices (plots, the IWAE bound)."""
  import jax
  if jax.process_count() == 1:
    return tree
  from jax.experimental import multihost_utils
  return multihost_utils.process_allgather(tree, tiled=True)


def is_main() -> bool:
  """Process 0: the one that writes logs, plots and the summary."""
  import jax
  return jax.process_index() == 0


class Watchdog(threading.Thread):
  """Every process posts a counter to the coordinator's key-value store every second and watches
  the others'. When one stops moving for `timeout` seconds (its process died or hangs), or the
  coordinator is gone (process 0 died), this process prints one line and exits with 75 (rerun
  every process with the same command to resume), rather than wait in a collective forever."""

  running_timeout: int | None = None  # the started watchdog's, for exit_if_peer_lost

  def __init__(self, timeout: int):
    super().__init__(name='aelab-watchdog', daemon=True)
    import jax
    from jax._src import distributed as jax_distributed  # the client orbax uses too
    self.client = jax_distributed.global_state.client
    self.me, self.n, self.timeout = jax.process_index(), jax.process_count(), timeout
    Watchdog.running_timeout = timeout
    self._stop = threading.Event()
    atexit.register(self._stop.set)  # before jax's own shutdown (registered earlier, runs later)

  def run(self) -> None:
    seen = {p: (None, time.monotonic()) for p in range(self.n) if p != self.me}
    beat = 0
    while not self._stop.wait(1.0):
      beat += 1
      try:
        self.client.key_value_set(f'{_ALIVE}{self.me}', str(beat), allow_overwrite=True)
        values = dict(self.client.key_value_dir_get(_ALIVE))
      except Exception as e:
        if self._stop.is_set():
          return
        _exit(f'lost the coordinator of this run (process 0 died or was killed: '
              f'{_first_line(e)})')
      now = time.monotonic()
      for p, (value, since) in seen.items():
        current = values.get(f'{_ALIVE}{p}')
        if current != value:
          seen[p] = (current, now)
        elif now - since > self.timeout:
          _exit(f'process {p} of {self.n} stopped responding {now - since:.0f} s ago (it '
                'died or was killed)')


def _exit(why: str) -> None:
  """Ends this process with one line and exit code 75 (a peer is gone: rerun them all)."""
  import jax
  errors.exit_with(f'{why}; stopping process {jax.process_index()} too. Rerun every process '
                   'with the same command to resume from the last checkpoint.', 75, now=True)
