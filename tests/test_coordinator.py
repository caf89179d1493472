"""Joining a multi-process run is bounded: a coordinator that never answers (an unknown host, a port
nobody listens on) or a SIGTERM while waiting ends the process with one line within
--coordinator_timeout, never with jax's fatal abort and C++ stack trace after minutes."""

import signal
import socket
import subprocess
import sys
import time

import kill_runs
from aelab.trainer import distributed
from conftest import ROOT, one_line_error

# Starting Python and importing jax takes a few seconds before the wait begins (more on a busy
# machine); jax's own wait would last minutes.
START_UP_S = 20


def _start(workdir, address: str, timeout: int, process_id: int = 1):
  cmd = [sys.executable, '-m', 'aelab.run', '--config=experiments/mnist_ae.py:tiny',
         f'--workdir={workdir}', f'--coordinator_address={address}', '--num_processes=2',
         f'--process_id={process_id}', f'--coordinator_timeout={timeout}']
  return subprocess.Popen(cmd, cwd=ROOT, env=kill_runs.env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _finish(proc, workdir) -> tuple[int, str]:
  _, err = proc.communicate(timeout=120)
  assert len(err.splitlines()) == 1 and 'Traceback' not in err, err[-3000:]
  assert not workdir.exists()  # nothing is written before the processes meet
  return proc.returncode, err.strip()


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_an_unknown_host_is_one_line_at_once(tmp_path):
  t = time.monotonic()
  rc, err = _finish(_start(tmp_path / 'run', 'no-such-host.invalid:1234', 60), tmp_path / 'run')
  assert rc == 2 and time.monotonic() - t < START_UP_S  # not the 60 s of the timeout
  assert err.startswith("aelab: error: --coordinator_address=no-such-host.invalid:1234: unknown "
                        "host 'no-such-host.invalid' ("), err
  assert err.endswith('); give the host name or IP address of process 0'), err


def test_a_port_nobody_listens_on_is_one_line_after_the_timeout(tmp_path):
  port = _free_port()
  t = time.monotonic()
  rc, err = _finish(_start(tmp_path / 'run', f'localhost:{port}', 3), tmp_path / 'run')
  assert rc == 2 and 3 <= time.monotonic() - t < 3 + START_UP_S
  assert err == (f"aelab: error: the run's processes did not meet at localhost:{port} within 3 s "
                 '(--coordinator_timeout=3): nothing answers there (Connection refused); start '
                 "every process with the same --coordinator_address (process 0's HOST:PORT) and "
                 '--num_processes, or raise --coordinator_timeout')


def test_sigterm_while_waiting_for_the_coordinator_exits_75_at_once(tmp_path):
  """A coordinator that accepts the connection and never answers: once the process is connected
  (it is waiting in jax.distributed.initialize), SIGTERM ends it at once."""
  with socket.socket() as listener:
    listener.bind(('localhost', 0))
    listener.listen()
    listener.settimeout(START_UP_S + 30)
    address = f'localhost:{listener.getsockname()[1]}'
    proc = _start(tmp_path / 'run', address, 60)
    connection, _ = listener.accept()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    t = time.monotonic()
    rc, err = _finish(proc, tmp_path / 'run')
    connection.close()
  assert rc == 75 and time.monotonic() - t < 5
  assert err == (f"aelab: stopped by SIGTERM while waiting for the run's processes to meet at "
                 f'{address}; nothing to save yet. Rerun the same command to resume.')


def test_a_port_taken_on_process_0_is_one_line_at_once(tmp_path):
  with socket.socket() as taken:
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    taken.bind(('', 0))
    taken.listen()
    port = taken.getsockname()[1]
    t = time.monotonic()
    rc, err = _finish(_start(tmp_path / 'run', f'localhost:{port}', 60, process_id=0),
                      tmp_path / 'run')
  assert rc == 2 and time.monotonic() - t < START_UP_S
  assert err == (f'aelab: error: --coordinator_address=localhost:{port}: port {port} is taken on '
                 'this host, process 0 (Address already in use); choose a free port')


def test_the_address_and_the_timeout_are_checked_in_one_line():
  for bad in ('host:99999', 'host:http', ':1234'):
    assert one_line_error(distributed.check_flags, bad, 2, 0) == (
        f"--coordinator_address={bad!r} must be HOST:PORT with a port in [1, 65535], e.g. "
        '10.0.0.1:1234')
  assert one_line_error(distributed.initialize, 'host:1234', 2, 1, 30, 0) == (
      '--coordinator_timeout=0 must be at least 1 second')
