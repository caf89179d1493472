"""Writers beside metrics.jsonl (aelab/tracking): train.writers is checked before a run starts, a
writer that fails costs one warning line and never the run, a resumed writer sends only what its
store lacks, and W&B's record files are read back exactly. With the optional packages (wandb,
mlflow: `pip install 'aelab[wandb,mlflow]'`): a run, a run killed with SIGKILL and rerun, and a
sweep, each read back from MLflow's store and W&B's offline files against metrics.jsonl."""

import importlib.util
import json
import shutil
import struct
import subprocess
import sys
import time
import zlib

import pytest

import kill_runs
import tracker_history as history
from aelab import tracking
from aelab.errors import AelabError
from aelab.tracking import wandb_store
from aelab.tracking.writer import Writer
from conftest import ROOT

BOTH = "--config.train.writers=('tensorboard','wandb','mlflow')"
_extras = pytest.mark.skipif(
    any(importlib.util.find_spec(p) is None for p in ('wandb', 'mlflow')),
    reason="the trackers' packages are not installed: pip install 'aelab[wandb,mlflow]'")


@pytest.mark.quick
def test_writers_are_checked_with_a_one_line_error_naming_the_extra(monkeypatch):
  assert tracking.check(('tensorboard', 'tensorboard')) == ('tensorboard',)
  with pytest.raises(AelabError, match="unknown writer 'neptune'; valid: tensorboard, wandb, mlflow"):
    tracking.check(('tensorboard', 'neptune'))
  with pytest.raises(AelabError, match='must be a tuple of names'):
    tracking.check('mlflow')
  monkeypatch.setattr(tracking.importlib.util, 'find_spec', lambda name: None)
  with pytest.raises(AelabError, match=r"has 'wandb', but the wandb package is not installed: "
                                       r"pip install 'aelab\[wandb\]'"):
    tracking.check(('wandb',))


class _Store:
  """A store that holds some pairs already and fails at its `fail_at`-th write."""

  def __init__(self, held=(), fail_at=None):
    self.pairs, self._held, self.fail_at, self.closed = [], set(held), fail_at, False

  def held(self):
    return self._held

  def write(self, step, time, scalars):
    if len(self.pairs) + 1 == self.fail_at:
      raise OSError(28, 'No space left on device')
    self.pairs.append((step, dict(scalars)))

  def finish(self, step, summary, plots):
    self.pairs.append(('summary', step, dict(summary)))

  def close(self):
    self.closed = True


@pytest.mark.quick
def test_a_resumed_writer_sends_only_what_its_store_lacks():
  store = _Store(held={('loss', 10), ('loss', 20), ('val/mse', 20)})
  w = Writer('fake', lambda: store)
  w.replay([{'step': 10, 'time': 0.0, 'loss': 1.0}, {'step': 20, 'time': 0.0, 'loss': 'nan'}])
  w.write(20, 1.0, {'val/mse': 0.5, 'val/r2': 0.1})
  w.write(30, 2.0, {'loss': 0.25})
  w.finish({'step': 30, 'loss': 0.25, 'test': {'mse': 0.2}, 'platform': 'cpu', 'flag': True}, [])
  assert store.pairs == [(20, {'val/r2': 0.1}), (30, {'loss': 0.25}),
                         ('summary', 30, {'test/mse': 0.2})]


@pytest.mark.quick
def test_a_failing_writer_is_one_warning_and_the_rest_go_on(capsys):
  store = _Store(fail_at=2)
  w = Writer('fake', lambda: store)
  for step in (10, 20, 30):
    w.write(step, 0.0, {'loss': 1.0})
  w.finish({'step': 30}, [])
  w.close()
  err = capsys.readouterr().err
  assert err == ('aelab: warning: the fake writer failed (OSError: [Errno 28] No space left on '
                 'device); the run goes on without it (metrics.jsonl keeps every row)\n')
  assert store.pairs == [(10, {'loss': 1.0})] and store.closed

  def cannot_open():
    raise ConnectionRefusedError('no server at 127.0.0.1:9')
  assert Writer('fake', cannot_open).store is None
  assert 'the fake writer failed (ConnectionRefusedError: no server' in capsys.readouterr().err


def _log_file(path, payloads):
  """A W&B record file in LevelDB's log format, written by hand (checks the reader, not W&B)."""
  out, block = bytearray(b':W&B' + struct.pack('<HB', 0xBEE1, 0)), 32768

  def record(kind, data):
    out.extend(struct.pack('<IHB', zlib.crc32(data, zlib.crc32(bytes([kind]))) & 0xffffffff,
                           len(data), kind) + data)

  for data in payloads:
    first = True
    while True:
      left = block - len(out) % block
      if left < 7:
        out.extend(b'\0' * left)
        continue
      room = left - 7
      if len(data) <= room:
        record(1 if first else 4, data)
        break
      record(2 if first else 3, data[:room])
      data, first = data[room:], False
  path.write_bytes(bytes(out))
  return len(out)


@pytest.mark.quick
def test_the_wandb_record_reader_joins_split_records_and_stops_at_a_torn_tail(tmp_path):
  payloads = [b'a' * 100, bytes(range(256)) * 300, b'b' * 32000, b'c' * 10]  # 76.8 KB spans 3 blocks
  size = _log_file(tmp_path / 'run-x.wandb', payloads)
  assert list(wandb_store.records(tmp_path / 'run-x.wandb')) == payloads
  data = (tmp_path / 'run-x.wandb').read_bytes()
  (tmp_path / 'torn.wandb').write_bytes(data[:size - 5])
  assert list(wandb_store.records(tmp_path / 'torn.wandb')) == payloads[:3]
  flipped = bytearray(data)
  flipped[200] ^= 1  # inside the second record: it and everything after are dropped
  (tmp_path / 'flipped.wandb').write_bytes(bytes(flipped))
  assert list(wandb_store.records(tmp_path / 'flipped.wandb')) == payloads[:1]


def _run(workdir, *extra, steps=60, checkpoint_every=30, env=None):
  return subprocess.run(kill_runs.command(workdir, checkpoint_every, steps) + [BOTH, *extra],
                        cwd=ROOT, env=env or kill_runs.env(), capture_output=True, text=True,
                        timeout=300)


@_extras
def test_both_trackers_hold_every_row_of_metrics_jsonl_the_config_and_the_summary(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  stale = workdir / '.mlflow.db.999999.tmp'  # a store a killed process was making: never used
  stale.write_bytes(b'half-made')
  done = _run(workdir, '--config.evals.plots.every=0')
  assert not stale.exists()
  assert done.returncode == 0 and 'warning' not in done.stderr, done.stderr[-2000:]
  rows = history.jsonl(workdir)
  assert {s for _, s in rows} == {10, 20, 30, 40, 50, 60}
  metrics, points, params = history.mlflow(workdir)
  assert points == len(metrics)  # no (metric, step) twice
  assert history.same({k: metrics[k] for k in rows}, rows)
  summary = json.loads((workdir / 'summary.json').read_text())
  assert metrics['wall_time_s', 60] == summary['wall_time_s']
  assert params['model.name'] == 'dense' and params['train.num_steps'] == '60'
  assert history.same(history.wandb(workdir), rows)
  ids = json.loads((workdir / 'trackers.json').read_text())
  from mlflow import MlflowClient
  client = MlflowClient(ids['mlflow']['uri'])
  assert client.get_run(ids['mlflow']['run_id']).info.status == 'FINISHED'
  assert sorted(a.path for a in client.list_artifacts(ids['mlflow']['run_id'], 'plots')) == [
      f'plots/{p.name}' for p in sorted((workdir / 'plots').glob('*.png'))]
  media = wandb_store.offline_history(workdir, ids['wandb'])
  assert media['plots/reconstructions', 60]['_type'] == 'image-file'


def _kill_past_a_checkpoint(cmd, workdir) -> int:
  """Starts `cmd` and kills it with SIGKILL once the trackers got rows past its last checkpoint
  (retried when the kill lands on a checkpoint); that checkpoint's step."""
  for _ in range(3):
    shutil.rmtree(workdir, ignore_errors=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=kill_runs.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (
        0 < _last_checkpoint(workdir) < 300 and
        max(r['step'] for r in _rows(workdir)) >= _last_checkpoint(workdir) + 30):
      time.sleep(0.01)
    proc.kill()
    proc.wait()
    held, _, _ = history.mlflow(workdir)
    if 0 < _last_checkpoint(workdir) < max(s for _, s in held):
      return _last_checkpoint(workdir)
  raise AssertionError('no kill landed between a checkpoint and the next')


def _last_checkpoint(workdir) -> int:
  ckpts = workdir / 'checkpoints'
  return max((int(p.name) for p in ckpts.iterdir() if p.name.isdigit()), default=0) \
      if ckpts.is_dir() else 0


@_extras
def test_kill_9_after_the_trackers_got_rows_past_the_checkpoint_then_the_rerun_sends_each_once(
    tmp_path):
  workdir, reference = tmp_path / 'run', tmp_path / 'unbroken'
  cmd = kill_runs.command(workdir, 100, 300) + [BOTH]
  checkpoint = _kill_past_a_checkpoint(cmd, workdir)
  again = subprocess.run(cmd, cwd=ROOT, env=kill_runs.env(), capture_output=True, text=True,
                         timeout=300)
  assert again.returncode == 0, again.stderr[-2000:]
  assert json.loads((workdir / 'summary.json').read_text())['resumed_from_step'] == checkpoint
  assert subprocess.run(kill_runs.command(reference, 100, 300) + [BOTH], cwd=ROOT,
                        env=kill_runs.env(), capture_output=True).returncode == 0
  rows = history.jsonl(reference)
  assert history.same(history.jsonl(workdir), rows)
  for run in (workdir, reference):
    metrics, points, _ = history.mlflow(run)
    assert points == len(metrics) and history.same({k: metrics[k] for k in rows}, rows), run
    assert history.same(history.wandb(run), rows), run
  ids = json.loads((workdir / 'trackers.json').read_text())
  assert len(wandb_store.segments(workdir, ids['wandb'])) == 2  # one W&B run, two segments


def _rows(workdir):
  from aelab.trainer.writers import read_jsonl
  return read_jsonl(workdir / 'metrics.jsonl')


@_extras
def test_a_sweep_is_one_experiment_and_one_group_with_the_swept_fields(tmp_path):
  sweep = tmp_path / 'lr_sweep'
  done = subprocess.run(
      [sys.executable, '-m', 'aelab.sweep', '--config=experiments/mnist_ae.py:tiny',
       f'--workdir={sweep}', '--file_sweep=false', '--sweep=optimizer.learning_rate=0.001,0.003',
       '--sweep=seed=0,1', '--parallel=2', "--config.train.writers=('wandb','mlflow')",
       '--config.train.num_steps=20', '--config.evals.plots.every=-1'],
      cwd=ROOT, env=kill_runs.env(), capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  from mlflow import MlflowClient
  client = MlflowClient(f'sqlite:///{sweep / "mlflow.db"}')
  runs = client.search_runs([client.get_experiment_by_name('lr_sweep').experiment_id])
  got = sorted((r.data.params['optimizer.learning_rate'], r.data.params['seed'],
                r.data.tags['sweep.optimizer.learning_rate'], r.info.status) for r in runs)
  assert got == [(lr, s, lr, 'FINISHED') for lr in ('0.001', '0.003') for s in '01']
  from wandb.proto import wandb_internal_pb2
  groups = []
  for ids in sorted(sweep.glob('*/trackers.json')):
    wid = json.loads(ids.read_text())['wandb']
    (segment,) = wandb_store.segments(ids.parent, wid)
    for data in wandb_store.records(segment):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(data)
      if record.WhichOneof('record_type') == 'run':
        groups.append((record.run.run_group, sorted(record.run.tags), record.run.display_name))
  assert groups == [('lr_sweep', [f'optimizer.learning_rate={lr}', f'seed={s}'],
                     f'learning_rate={lr},seed={s}') for lr in ('0.001', '0.003') for s in '01']


@_extras
def test_an_unreachable_mlflow_server_costs_one_warning_line_not_the_run(tmp_path):
  done = _run(tmp_path / 'run', '--config.train.mlflow_uri=http://127.0.0.1:9',
              "--config.train.writers=('mlflow',)", steps=20,
              env=dict(kill_runs.env(), MLFLOW_HTTP_REQUEST_MAX_RETRIES='0'))
  assert done.returncode == 0, done.stderr[-2000:]
  warnings = [line for line in done.stderr.splitlines() if 'warning' in line]
  assert len(warnings) == 1 and warnings[0].startswith(
      'aelab: warning: the mlflow writer failed (MlflowException: '), done.stderr
  assert (tmp_path / 'run' / 'summary.json').exists()
