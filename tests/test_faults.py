"""Fault injection: a killed, stopped, corrupted or badly configured run ends in a completed run or
in one clear line; nothing is lost and nothing is silently wrong.

The reference is one unbroken run of tests/kill_runs.py's command (mnist_ae:tiny, 150 steps, a
checkpoint every 10); every broken run is compared with it exactly: final parameters, optimizer
state, step and RNG, metrics.jsonl (wall-clock fields aside) and the TensorBoard scalars.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import kill_runs
from aelab.config import defaults
from aelab.errors import AelabError
from aelab.trainer import checkpoint, train
from conftest import DATA, ROOT, experiment

STEPS, EVERY = 150, 10


def _cmd(workdir, *extra):
  return kill_runs.command(workdir, EVERY, STEPS) + list(extra)


def _run(workdir, *extra):
  return subprocess.run(_cmd(workdir, *extra), cwd=ROOT, env=kill_runs.env(),
                        capture_output=True, text=True, timeout=300)


def _start(workdir, *extra):
  return subprocess.Popen(_cmd(workdir, *extra), cwd=ROOT, env=kill_runs.env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path, timeout=120):
  deadline = time.time() + timeout
  while time.time() < deadline and not path.exists():
    time.sleep(0.05)
  assert path.exists(), path


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('faults') / 'reference'
  result = _run(workdir)
  assert result.returncode == 0, result.stderr
  return workdir


def _assert_same_as(reference, workdir):
  assert kill_runs.same_run(reference, workdir) == {'params': True, 'metrics': True,
                                                    'tensorboard': True}


def test_kill_9_at_random_times_then_rerun_completes_identically(reference, tmp_path):
  """One kill at a random time in training: up to 1 s after the first checkpoint, which on any
  machine is before the end of the run (a delay from the start may land in the import of jax, where
  nothing is written yet, or after the run ended; tests/kill_runs.py --kills=20 draws the full
  range, 20 times)."""
  out = kill_runs.trial(tmp_path / 'kill', random.Random(1).uniform(0.0, 1.0), EVERY, STEPS,
                        after=f'checkpoints/{EVERY}')
  assert out['rerun_exit'] == 0, out
  assert out['at_kill'] != 'the run had finished', out
  _assert_same_as(reference, tmp_path / 'kill')
  assert not list((tmp_path / 'kill' / 'checkpoints').glob('*tmp*'))


def test_rerunning_a_finished_run_says_so_and_exits_0(reference):
  summary = (reference / 'summary.json').read_text()
  result = _run(reference)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == (f'aelab: the run in {reference} is already complete ({STEPS} '
                                   f'steps); results in {reference}/summary.json')
  assert (reference / 'summary.json').read_text() == summary


def _corrupt(step_dir, how):
  files = sorted((p for p in (step_dir / 'arrays').rglob('*') if p.is_file()),
                 key=lambda p: p.stat().st_size)
  data = files[-1]  # the largest file holds the array data
  if how == 'garbage':
    with open(data, 'r+b') as f:
      f.seek(data.stat().st_size // 2)
      f.write(os.urandom(4096))
  elif how == 'flip':
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    data.write_bytes(bytes(raw))
  elif how == 'truncate':
    data.write_bytes(data.read_bytes()[:data.stat().st_size // 3])
  else:
    data.unlink()


@pytest.mark.parametrize('how', ['garbage', 'flip', 'truncate', 'delete'])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(reference, tmp_path, how):
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  (workdir / 'summary.json').unlink()  # as if killed during the final evaluation
  _corrupt(workdir / 'checkpoints' / str(STEPS), how)
  result = _run(workdir)
  assert result.returncode == 0, result.stderr
  warnings = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(warnings) == 1 and warnings[0].startswith(
      f'aelab: warning: checkpoint {STEPS} in {workdir}/checkpoints is corrupt ('), warnings
  assert f'using step {STEPS - EVERY}' in warnings[0]
  assert (workdir / 'checkpoints.corrupt' / str(STEPS)).is_dir()
  _assert_same_as(reference, workdir)


def test_inspection_falls_back_the_same_way(reference, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  _corrupt(workdir / 'checkpoints' / str(STEPS), 'flip')
  result = subprocess.run([sys.executable, '-m', 'aelab.inspect', 'weights',
                           f'--workdir={workdir}', f'--out={tmp_path / "w.npz"}'],
                          cwd=ROOT, env=kill_runs.env(), capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  assert result.stderr.count(f'aelab: warning: checkpoint {STEPS}') == 1 and 'Traceback' not in \
      result.stderr
  with np.load(tmp_path / 'w.npz') as w:
    previous = kill_runs.final_state(workdir)  # now step 140
    assert previous['step'] == STEPS - EVERY
    np.testing.assert_array_equal(w['encoder_1/kernel'],
                                  previous["['state']['params']['encoder_1']['kernel']"])


def test_no_checkpoint_that_verifies_is_one_clear_error(reference, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  for step_dir in (workdir / 'checkpoints').iterdir():
    if step_dir.name.isdigit():
      _corrupt(step_dir, 'garbage')
  result = _run(workdir)
  assert result.returncode == 2 and 'Traceback' not in result.stderr
  assert result.stderr.splitlines()[-1].startswith('aelab: error: no usable checkpoint in ')


def test_a_torn_metrics_line_and_a_sigterm_mid_run_then_the_rerun_matches(reference, tmp_path):
  workdir = tmp_path / 'run'
  proc = _start(workdir)
  _wait_for(workdir / 'checkpoints' / '50')
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=60)
  assert proc.returncode == 75, err  # interrupted: a scheduler requeues on it
  stopped = int(err.split('at step ')[1].split('/')[0])
  assert err.strip() == (f'aelab: stopped by SIGTERM at step {stopped}/{STEPS}; checkpoint at '
                         f'step {stopped} in {workdir}/checkpoints. Rerun the same command to '
                         'resume.')
  with open(workdir / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 9999, "train/lo')  # a run killed mid-write leaves a torn last line
  result = _run(workdir)
  assert result.returncode == 0, result.stderr
  assert json.loads((workdir / 'summary.json').read_text())['resumed_from_step'] == stopped
  _assert_same_as(reference, workdir)


def test_sigterm_at_start_up_exits_75_with_a_message_and_nothing_lost(reference, tmp_path):
  workdir = tmp_path / 'run'
  proc = _start(workdir)
  time.sleep(0.3)  # before jax is imported
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=60)
  assert proc.returncode == 75, err
  assert err.strip().startswith('aelab: stopped by SIGTERM before training began; nothing to '
                                'save yet.')
  assert _run(workdir).returncode == 0
  _assert_same_as(reference, workdir)


def test_sigterm_during_the_final_evaluation_then_the_rerun_finishes_it(tmp_path):
  workdir = tmp_path / 'vae'
  # The IWAE bound of 1000 samples on 200 examples takes seconds (its compilation too, in the first
  # run): the SIGTERM, 0.5 s after the last checkpoint is written, lands in it.
  cmd = [sys.executable, '-m', 'aelab.run', '--config=experiments/vae_mnist.py:tiny',
         f'--workdir={workdir}', '--config.train.progress=False', '--config.evals.iwae.samples=1000',
         '--config.evals.iwae.examples=200', '--config.evals.plots.every=-1']
  proc = subprocess.Popen(cmd, cwd=ROOT, env=kill_runs.env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  _wait_for(workdir / 'checkpoints' / '60')   # the last step: the final evaluation is running
  time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 75, err
  assert 'stopped by SIGTERM during the final evaluation; checkpoint at step 60' in err
  assert not (workdir / 'summary.json').exists()
  rerun = subprocess.run(cmd, cwd=ROOT, env=kill_runs.env(), capture_output=True, text=True)
  assert rerun.returncode == 0, rerun.stderr
  rows = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  final = [r for r in rows if r['step'] == 60 and not any(k.startswith('train/') for k in r)]
  keys = [k for r in final for k in r if '/' in k]
  assert len(final) == 3 and len(keys) == len(set(keys))  # iwae, test and val once each
  assert json.loads((workdir / 'summary.json').read_text())['test']['iwae_k'] == 1000


@pytest.fixture
def refused(capsys, monkeypatch):
  """refused(workdir, *extra): the stderr of the run command above when it stops with exit code 2
  before training, through the CLI's own path in this process (as tests/test_fuzz.py does): a
  subprocess would add only Python's and jax's start-up."""
  from aelab import run as run_cli
  monkeypatch.chdir(ROOT)  # the config path as the subprocesses give it

  def run(workdir, *extra):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
      run_cli.run(_cmd(workdir, *extra)[3:])  # after [python, -m, aelab.run]
    assert exited.value.code == 2
    return capsys.readouterr().err
  return run


def test_resuming_with_another_batch_size_is_refused(reference, refused):
  err = refused(reference, '--config.train.batch_size=100')
  assert 'differs in train.batch_size' in err and len(err.splitlines()) == 1


def test_a_workdir_that_is_a_file_or_empty_is_one_line(tmp_path, refused):
  workdir = tmp_path / 'run'
  workdir.write_text('not a directory')
  err = refused(workdir)
  assert len(err.splitlines()) == 1
  assert 'is a file, not a directory' in err and workdir.read_text() == 'not a directory'
  err = refused(workdir, '--workdir=')  # the later flag wins: an empty workdir
  assert len(err.splitlines()) == 1 and '--workdir' in err


def test_an_npz_dataset_that_is_a_csv_is_one_line(tmp_path):
  config = experiment('tabular_ae')
  config.dataset = defaults.dataset('npz')
  config.dataset.path = str(DATA / 'wine.csv')
  with pytest.raises(AelabError, match=r'wine.csv is not an .npz file \(the zip archive'):
    train.train_and_evaluate(config, tmp_path / 'run')
  assert not (tmp_path / 'run').exists()


def _diverging(monkeypatch, from_step, what):
  """The trainer's train block, with the loss (or the optimizer state) non-finite from `from_step`
  on."""
  import jax
  import jax.numpy as jnp

  from aelab.trainer.setup import Setup
  make = Setup.train_block

  def train_block(self):
    block = make(self)

    def poisoned(state, prep, source, idx, check=True):
      first = int(state.step)
      state, out = block(state, prep, source, idx, check)
      steps = first + jnp.arange(out['loss'].shape[0])
      if what == 'loss':
        out['loss'] = jnp.where(steps >= from_step, jnp.nan, out['loss'])
      elif int(state.step) > from_step:  # Adam's second moments: the loss stays finite
        state = state.replace(opt_state=jax.tree_util.tree_map_with_path(
            lambda path, a: a.at[0].set(jnp.inf) if '.nu' in jax.tree_util.keystr(path) else a,
            state.opt_state))
        out['finite'] = jnp.array(not check)  # what the block computes from such a state
      return state, out

    return poisoned

  monkeypatch.setattr(Setup, 'train_block', train_block)


def test_divergence_names_a_checkpoint_from_before_it_and_leaves_it_whole(tmp_path, monkeypatch):
  _diverging(monkeypatch, 25, 'loss')
  config = experiment('mnist_ae')
  config.train.update(progress=False, checkpoint_every=10, steps_per_call=5)
  with pytest.raises(AelabError) as e:
    train.train_and_evaluate(config, tmp_path)
  assert str(e.value) == (f'training stopped: the loss is nan at step 25 (lower '
                          'optimizer.learning_rate or set optimizer.grad_clip); the last good '
                          f'checkpoint is step 20 in {tmp_path}/checkpoints')
  with checkpoint.Checkpoints(tmp_path) as ckpts:
    assert ckpts.all_steps() == [10, 20]  # the block that reached 30 was checked before saving
    assert ckpts.restore_raw()[0] == 20
  assert not list((tmp_path / 'checkpoints').glob('*tmp*'))


def test_divergence_of_the_optimizer_state_is_caught_though_the_loss_is_finite(tmp_path,
                                                                               monkeypatch):
  _diverging(monkeypatch, 32, 'opt_state')
  config = experiment('mnist_ae')
  config.train.update(progress=False, checkpoint_every=10, steps_per_call=5, log_every=20)
  with pytest.raises(AelabError, match='parameters or optimizer state hold inf or NaN after step '
                                       '39, though the loss was still finite.*step 30'):
    train.train_and_evaluate(config, tmp_path)


def test_an_error_after_a_save_leaves_no_half_written_checkpoint(tmp_path):
  config = experiment('mnist_ae')
  config.train.update(progress=False, checkpoint_every=30)
  config.evals.plots.every = -1

  def fail(step):
    if step == 40:
      raise RuntimeError('disk full')  # right after the save at step 30 was started
    return False

  with pytest.raises(RuntimeError, match='disk full'):
    train.train_and_evaluate(config, tmp_path, should_stop=fail)
  assert not list((tmp_path / 'checkpoints').glob('*tmp*'))
  with checkpoint.Checkpoints(tmp_path) as ckpts:
    assert ckpts.restore_raw()[0] == 30
