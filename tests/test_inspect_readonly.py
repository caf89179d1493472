"""Reading a workdir changes nothing in it: an inspection of a run whose checkpoint is corrupt warns
once, falls back to the previous step and leaves every file where and as it was; only the training
run (Checkpoints(writer=True)) moves corrupt steps aside or creates directories."""

import hashlib
import pathlib
import shutil
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

import kill_runs
from aelab.errors import AelabError
from aelab.trainer import checkpoint
from conftest import ROOT, experiment, train_on_test_data


def _tree(workdir: pathlib.Path) -> dict[str, str]:
  """Every file and directory under `workdir`: {relative path: sha256 of the contents ('dir')}."""
  return {str(p.relative_to(workdir)): 'dir' if p.is_dir() else
          hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(workdir.rglob('*'))}


def _flip(step_dir: pathlib.Path) -> None:
  """One flipped bit in the middle of the largest file of array data (only aelab's checksum sees
  it)."""
  data = max((step_dir / 'arrays' / 'ocdbt.process_0' / 'd').iterdir(),
             key=lambda p: p.stat().st_size)
  raw = bytearray(data.read_bytes())
  raw[len(raw) // 2] ^= 0x01
  data.write_bytes(bytes(raw))


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('readonly') / 'run'
  config = experiment('mnist_ae')
  config.train.update(progress=False, checkpoint_every=30)
  config.evals.plots.every = -1
  train_on_test_data(config, workdir)
  return workdir


def test_inspecting_a_corrupt_latest_checkpoint_changes_nothing(trained, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(trained, workdir)
  _flip(workdir / 'checkpoints' / '60')
  before = _tree(workdir)
  result = subprocess.run([sys.executable, '-m', 'aelab.inspect', 'weights',
                           f'--workdir={workdir}', f'--out={tmp_path / "w.npz"}'], cwd=ROOT,
                          env=kill_runs.env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stderr.splitlines()
  warning = f'aelab: warning: checkpoint 60 in {workdir}/checkpoints is corrupt (checksum mismatch '
  assert len(lines) == 1 and lines[0].startswith(warning), lines
  assert lines[0].endswith('; left in place; using step 30'), lines
  assert _tree(workdir) == before  # nothing moved, created or rewritten
  with checkpoint.Checkpoints(workdir) as ckpts:
    params = ckpts.restore_raw(30)[1]['state']['params']
  with np.load(tmp_path / 'w.npz') as w:
    np.testing.assert_array_equal(w['encoder_1/kernel'], params['encoder_1']['kernel'])


def _save_two(workdir) -> None:
  with checkpoint.Checkpoints(workdir, writer=True) as ckpts:
    for s in (1, 2):
      w = np.random.default_rng(s).normal(size=(64, 32)).astype(np.float32)
      ckpts.save(s, {'w': jnp.asarray(w)}, {'step': s})


def test_a_reader_of_corrupt_checkpoints_moves_nothing(tmp_path, capfd):
  _save_two(tmp_path)
  for s in (1, 2):
    _flip(tmp_path / 'checkpoints' / str(s))
  before = _tree(tmp_path)
  capfd.readouterr()
  with checkpoint.Checkpoints(tmp_path) as ckpts:
    with pytest.raises(AelabError) as e:
      ckpts.restore_raw()
  assert str(e.value).startswith(f'no usable checkpoint in {tmp_path}/checkpoints: 2 (checksum '
                                 'mismatch in w')
  assert str(e.value).endswith(
      f'are corrupt (left in place); rerunning the training moves them to {tmp_path}/'
      f'checkpoints.corrupt and trains from step 0, or put a good copy back into {tmp_path}/'
      'checkpoints')
  assert capfd.readouterr().err == ''  # the one error names both steps
  assert _tree(tmp_path) == before
  with checkpoint.Checkpoints(tmp_path, writer=True) as ckpts:  # the training run moves them
    with pytest.raises(AelabError, match='are corrupt and moved to'):
      ckpts.restore_raw()
  assert sorted(p.name for p in (tmp_path / 'checkpoints.corrupt').iterdir()) == ['1', '2']


def test_a_reader_creates_no_directory_and_does_not_save(tmp_path):
  with checkpoint.Checkpoints(tmp_path) as ckpts:
    assert ckpts.all_steps() == []
    with pytest.raises(AelabError, match='^no checkpoint in '):
      ckpts.restore_raw()
    with pytest.raises(ValueError, match='only reads'):
      ckpts.save(1, {'w': jnp.zeros(3)}, {})
  assert list(tmp_path.iterdir()) == []
