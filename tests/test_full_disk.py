"""A checkpoint that cannot be written (a full disk, a read-only directory) ends the run with one
line naming the step, the directory, the OS's reason and the space needed; no half-written step is
left, and freeing space and rerunning resumes from the previous checkpoint, bit-identical."""

import json
import logging
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

import kill_runs
from aelab.errors import AelabError
from aelab.trainer import checkpoint
from conftest import ROOT

TREE = {'state': {'params': {'w': jnp.ones((64, 32), jnp.float32), 'b': jnp.zeros(32)},
                  'step': jnp.asarray(1, jnp.int32)}, 'preprocessing': {}}
NEEDS = f'{sum(a.nbytes for a in jax.tree.leaves(TREE)) / 1024:.1f} KiB'  # 8.1 KiB
# What orbax raises (tensorstore's ValueError, not an OSError) when the disk fills mid-save.
NO_SPACE = ('RESOURCE_EXHAUSTED: Error writing "state.params.w/0" in OCDBT database at local file '
            '"{d}/2.orbax-checkpoint-tmp/arrays.orbax-checkpoint-tmp/ocdbt.process_0/": Failed '
            'writing: "{d}/2.orbax-checkpoint-tmp/arrays.orbax-checkpoint-tmp/ocdbt.process_0/d/'
            '65bd": Failed to write 142032 bytes to file 5: No space left on device '
            "[os_error_code='28']")
ORBAX_FILE = '/venv/site-packages/orbax/checkpoint/_src/futures/future.py'


def _raise(error: Exception):
  raise error


def _half_written(ckpts, step: int) -> None:
  """What orbax leaves of a save that failed: its temporary step directory."""
  partial = ckpts.directory / f'{step}.orbax-checkpoint-tmp' / 'arrays.orbax-checkpoint-tmp'
  partial.mkdir(parents=True)
  (partial / 'manifest.ocdbt').write_bytes(b'\0' * 100)


def _orbax_logs(text: str) -> None:
  """An ERROR record as orbax's save threads log one (with the failure's traceback)."""
  logger = logging.getLogger('absl')
  logger.handle(logger.makeRecord('absl', logging.ERROR, ORBAX_FILE, 387, text, (), None))


def _fail_later(monkeypatch, ckpts, error: Exception) -> None:
  """The next save returns at once and fails in orbax's background threads: the failure is raised
  once, by the manager's next wait (at the next save, `wait()` or `close()`)."""
  pending = []

  def save(step, args, force):
    _half_written(ckpts, step)
    _orbax_logs(f'_SignalingThread.run() raised an exception: {error}')
    pending.append(error)

  wait = ckpts._manager.wait_until_finished

  def wait_until_finished():
    if pending:
      raise pending.pop()
    wait()

  monkeypatch.setattr(ckpts._manager, 'save', save)
  monkeypatch.setattr(ckpts._manager, 'wait_until_finished', wait_until_finished)


def _assert_one_line(message: str, directory, reason: str) -> None:
  assert '\n' not in message, message
  assert message == (f'could not write checkpoint 2 in {directory}: {reason}; free some space and '
                     'rerun the same command to resume from step 1'), message


@pytest.mark.parametrize('surfaces_at', ['save', 'next_save', 'wait', 'close'])
def test_a_full_disk_during_a_save_is_one_line_and_leaves_no_half_written_step(
    tmp_path, monkeypatch, capfd, caplog, surfaces_at):
  directory = tmp_path / 'checkpoints'
  error = ValueError(NO_SPACE.format(d=directory))
  with pytest.raises(AelabError) as e:
    with checkpoint.Checkpoints(tmp_path, writer=True) as ckpts:
      ckpts.save(1, TREE, {'step': 1})
      ckpts.wait()
      if surfaces_at == 'save':  # orbax's blocking part fails
        monkeypatch.setattr(ckpts._manager, 'save', lambda *a, **k: (_half_written(ckpts, 2),
                                                                      _raise(error)))
      else:
        _fail_later(monkeypatch, ckpts, error)
      ckpts.save(2, TREE, {'step': 2})
      if surfaces_at == 'next_save':
        ckpts.save(3, TREE, {'step': 3})
      elif surfaces_at == 'wait':
        ckpts.wait()
  free = r'[\d.]+ (bytes|KiB|MiB|GiB) free there'
  reason = f'No space left on device (the checkpoint needs about {NEEDS}; FREE)'
  _assert_one_line(re.sub(free, 'FREE', str(e.value)), directory, reason)
  assert sorted(p.name for p in directory.iterdir()) == ['1']  # no '2.orbax-checkpoint-tmp'
  with checkpoint.Checkpoints(tmp_path) as ckpts:
    assert ckpts.restore_raw()[0] == 1
  assert capfd.readouterr().err == ''  # orbax's own ERROR lines were held back, then dropped
  assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_any_other_write_error_names_the_os_reason(tmp_path, monkeypatch):
  with checkpoint.Checkpoints(tmp_path, writer=True) as ckpts:
    ckpts.save(1, TREE, {'step': 1})
    ckpts.wait()
    denied = PermissionError(13, 'Permission denied', str(ckpts.directory / '2'))
    monkeypatch.setattr(ckpts._manager, 'save', lambda *a, **k: _raise(denied))
    with pytest.raises(AelabError) as e:
      ckpts.save(2, TREE, {'step': 2})
  assert str(e.value) == (f'could not write checkpoint 2 in {ckpts.directory}: Permission denied; '
                          'fix that and rerun the same command to resume from step 1')


def test_orbax_errors_of_a_save_that_did_not_fail_are_shown(tmp_path, monkeypatch, caplog):
  """Held back while saving, orbax's ERROR records come out once the save is known to be fine:
  nothing it says is lost."""
  with checkpoint.Checkpoints(tmp_path, writer=True) as ckpts:
    save = ckpts._manager.save
    monkeypatch.setattr(ckpts._manager, 'save', lambda *a, **k: (
        _orbax_logs('something orbax wants said'), save(*a, **k)))
    ckpts.save(1, TREE, {'step': 1})
    assert 'something orbax wants said' not in caplog.text
    ckpts.wait()
    assert 'something orbax wants said' in caplog.text


@pytest.fixture
def small_disk(tmp_path):
  """A 1 MiB tmpfs: room for config, logs and one checkpoint of mnist_ae:tiny, not two."""
  if os.geteuid() != 0:
    pytest.skip('mounting a tmpfs needs root (CAP_SYS_ADMIN)')
  disk = tmp_path / 'disk'
  disk.mkdir()
  try:
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(disk)],
                             capture_output=True, text=True, timeout=30)
  except FileNotFoundError:
    pytest.skip('no mount command here')
  if mounted.returncode != 0:
    pytest.skip(f'mounting a tmpfs is not permitted here: {mounted.stderr.strip()}')
  yield disk
  subprocess.run(['umount', '-l', str(disk)], capture_output=True, timeout=30)


def _run(workdir):
  return subprocess.run([sys.executable, '-m', 'aelab.run', '--config=experiments/mnist_ae.py:tiny',
                         f'--workdir={workdir}', '--config.train.progress=False'], cwd=ROOT,
                        env=kill_runs.env(), capture_output=True, text=True, timeout=300)


def test_a_real_full_disk_then_the_rerun_matches_an_unbroken_run(small_disk, tmp_path):
  workdir = small_disk / 'run'
  full = _run(workdir)
  assert full.returncode == 2, full.stderr[-3000:]
  assert re.fullmatch(
      rf'aelab: error: could not write checkpoint 60 in {workdir}/checkpoints: No space left on '
      r'device \(the checkpoint needs about [\d.]+ KiB; [\d.]+ KiB free there\); free some space '
      r'and rerun the same command to resume from step 30\n', full.stderr), full.stderr[-3000:]
  assert [p for p in workdir.rglob('*') if 'tmp' in p.name] == []
  subprocess.run(['mount', '-o', 'remount,size=64m', str(small_disk)], check=True, timeout=30)
  again = _run(workdir)
  assert again.returncode == 0, again.stderr[-3000:]
  assert json.loads((workdir / 'summary.json').read_text())['resumed_from_step'] == 30
  assert _run(tmp_path / 'unbroken').returncode == 0
  assert kill_runs.same_run(tmp_path / 'unbroken', workdir) == {
      'params': True, 'metrics': True, 'tensorboard': True}
