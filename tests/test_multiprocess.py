"""Two real processes on localhost (4 fake CPU devices each, gloo collectives) train one run."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from aelab.trainer import checkpoint
from conftest import DATA, ROOT

ARGS = ('--config=experiments/mnist_ae.py:tiny', '--config.train.batch_size=64',
        '--config.train.progress=False')
PEER_TIMEOUT = 10


def _port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict:
  return dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
              JAX_PLATFORMS='cpu', AELAB_DATA_DIR=str(DATA))


_STARTED: list[subprocess.Popen] = []  # killed at the end of each test if still running


@pytest.fixture(autouse=True)
def _no_process_left_behind():
  """A failed test leaves no process waiting on a peer (they would run on into the next tests)."""
  yield
  while _STARTED:
    p = _STARTED.pop()
    if p.poll() is None:
      p.kill()
      p.communicate()


def _start(workdir, *extra, processes=2, devices=8):
  port = _port()
  procs = [subprocess.Popen(
      [sys.executable, '-m', 'aelab.run', *ARGS, f'--workdir={workdir}', *extra,
       f'--coordinator_address=localhost:{port}', f'--num_processes={processes}',
       f'--process_id={i}', f'--peer_timeout={PEER_TIMEOUT}'],
      cwd=ROOT, env=_env(devices // processes), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True) for i in range(processes)]
  _STARTED.extend(procs)
  return procs


def _finish(procs, timeout=300):
  out = []
  for p in procs:
    stdout, stderr = p.communicate(timeout=timeout)
    out.append((p.returncode, stdout, '\n'.join(
        line for line in stderr.splitlines() if not line.startswith('[Gloo]'))))
  return out


def _params(workdir, step):
  return checkpoint.Checkpoints(workdir).restore_raw(step)[1]['state']['params']


def test_two_processes_train_as_one_process_on_eight_devices(tmp_path):
  results = _finish(_start(tmp_path / 'two', '--config.train.device_data=no'))
  for rc, stdout, stderr in results:
    assert rc == 0, stderr[-3000:]
    assert 'aelab: done, 60 steps' in stdout
  one = subprocess.run([sys.executable, '-m', 'aelab.run', *ARGS, f'--workdir={tmp_path / "one"}',
                        '--config.evals.plots.every=-1'],
                       cwd=ROOT, env=_env(8), capture_output=True, text=True, timeout=300)
  assert one.returncode == 0, one.stderr[-3000:]
  two, single = (json.loads((tmp_path / d / 'summary.json').read_text()) for d in ('two', 'one'))
  assert (two['processes'], two['devices'], single['processes'], single['devices']) == (2, 8, 1, 8)
  for key in ('loss', 'mse', 'bce'):
    assert two['test'][key] == pytest.approx(single['test'][key], rel=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               _params(tmp_path / 'two', 60), _params(tmp_path / 'one', 60))
  # One set of logs, written by process 0: the rows of a lone run, one TensorBoard file.
  rows = [(tmp_path / d / 'metrics.jsonl').read_text().splitlines() for d in ('two', 'one')]
  assert len(rows[0]) == len(rows[1])
  assert len(list((tmp_path / 'two' / 'tensorboard').iterdir())) == 1
  assert (tmp_path / 'two' / 'plots' / 'filters.png').exists()


def _checkpoints(workdir) -> list[int]:
  return sorted(int(p.name) for p in (workdir / 'checkpoints').glob('*') if p.name.isdigit())


def _wait_for_checkpoint(procs, workdir, after: int, timeout: float = 120) -> None:
  """Until a checkpoint after step `after` is written; a process that exits first, or the
  timeout, fails the test at once with every process's exit code and last lines."""
  deadline = time.time() + timeout
  while not any(s > after for s in _checkpoints(workdir)):
    exited = [p.poll() is not None for p in procs]
    if any(exited) or time.time() > deadline:
      for p in procs:
        if p.poll() is None:
          p.kill()
      said = [f'process {i}: exit {rc}: ' + ' | '.join(err.strip().splitlines()[-3:])
              for i, (rc, _, err) in enumerate(_finish(procs, timeout=30))]
      raise AssertionError(
          f'no checkpoint after step {after} in {workdir} (steps {_checkpoints(workdir)}) '
          f'{"and a process exited" if any(exited) else f"after {timeout:.0f} s"}: ' +
          '; '.join(said))
    time.sleep(0.2)


def test_a_killed_process_stops_the_other_and_the_rerun_resumes(tmp_path):
  # One device per process, as on a CPU cluster: with several, the survivor's own devices talk
  # over gloo too, and gloo may abort it (SIGABRT, its own message) before aelab's line.
  workdir = tmp_path / 'run'
  # Enough steps that the signals below land before the run ends, even on a fast machine; no
  # plots (the first test makes them).
  steps = ('--config.train.num_steps=1500', '--config.train.checkpoint_every=50',
           '--config.evals.plots.every=-1')
  start = lambda: _start(workdir, *steps, devices=2)  # noqa: E731
  procs = start()
  _wait_for_checkpoint(procs, workdir, after=0)  # training, with a checkpoint to resume from
  procs[1].send_signal(signal.SIGKILL)
  killed = time.time()
  (rc, _, stderr), _ = _finish(procs, timeout=120)
  assert time.time() - killed < 60
  last = stderr.strip().splitlines()[-1]
  assert rc == 75, stderr[:6000]
  assert last.startswith('aelab: error: process 1 of 2 stopped responding ') and last.endswith(
      '(it died or was killed); stopping process 0 too. Rerun every process with the same '
      'command to resume from the last checkpoint.'), last
  # The rerun resumes; SIGTERM to process 1 alone stops both at the same step, with a checkpoint.
  stopped_at = _checkpoints(workdir)[-1]
  procs = start()
  _wait_for_checkpoint(procs, workdir, after=stopped_at)
  procs[1].send_signal(signal.SIGTERM)
  results = _finish(procs, timeout=120)
  assert [rc for rc, _, _ in results] == [75, 75], [(o, e[-2000:]) for _, o, e in results]
  said = {e.strip().splitlines()[-1].split(' at step ')[1].split('/')[0] for _, _, e in results}
  assert len(said) == 1, said  # the same step on both processes
  step = int(said.pop())
  assert step == _checkpoints(workdir)[-1] and stopped_at < step < 1500
  # The rerun resumes there and finishes (one block more: train.num_steps may change on resume).
  results = _finish(_start(workdir, *steps[1:], f'--config.train.num_steps={step + 10}',
                           devices=2))
  assert [rc for rc, _, _ in results] == [0, 0], [e[-2000:] for _, _, e in results]
  summary = json.loads((workdir / 'summary.json').read_text())
  assert (summary['step'], summary['resumed_from_step']) == (step + 10, step)


def test_the_multi_process_flags_are_checked_in_one_line():
  from aelab.trainer import distributed
  from conftest import one_line_error
  assert distributed.check_flags('', 0, -1) is False  # a run of one process
  assert distributed.check_flags('localhost:1234', 2, 1) is True
  assert 'go together: give all three' in one_line_error(distributed.check_flags, '', 2, -1)
  assert 'must be HOST:PORT' in one_line_error(distributed.check_flags, 'localhost', 2, 0)
  assert one_line_error(distributed.check_flags, 'h:1', 2, 2) == (
      '--process_id=2 must be in [0, 1] for --num_processes=2')


def test_a_collective_failed_by_a_dead_peer_ends_the_process_in_one_line(monkeypatch, capsys):
  """A failed collective (the peer's connection reset) ends the process through the watchdog's
  exit (75) once the watchdog had its chance; other errors, and any error of a lone process,
  pass through."""
  from aelab.trainer import distributed
  lost = jax.errors.JaxRuntimeError('UNKNOWN: Gloo all-reduce failed: [pair.cc:538] Read error '
                                    '[127.0.0.1]:59592: Connection reset by peer')
  slept, exited = [], []
  monkeypatch.setattr(distributed.time, 'sleep', slept.append)
  monkeypatch.setattr(distributed.os, '_exit', exited.append)
  monkeypatch.setattr(distributed.Watchdog, 'running_timeout', 10)
  with pytest.raises(jax.errors.JaxRuntimeError):  # a run of one process: nothing to say
    with distributed.exit_if_peer_lost():
      raise lost
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  for other in (jax.errors.JaxRuntimeError('RESOURCE_EXHAUSTED: out of memory'), ValueError('x')):
    with pytest.raises(type(other)):
      with distributed.exit_if_peer_lost():
        raise other
  with distributed.exit_if_peer_lost():
    raise lost
  assert (slept, exited) == ([12], [75])
  assert capsys.readouterr().err == (
      'aelab: error: a collective with the other processes failed (UNKNOWN: Gloo all-reduce '
      'failed: [pair.cc:538] Read error [127.0.0.1]:59592: Connection reset by peer): one of them '
      'died or was killed; stopping process 0 too. Rerun every process with the same command to '
      'resume from the last checkpoint.\n')
