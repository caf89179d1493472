"""Stacked autoencoders: each stage trains on the codes of the one below, the fine-tuned network
starts from the pretrained layers, the frozen variant keeps them, and an interrupted stacked run
resumes at the stage and step where it stopped and ends as an unbroken one."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import kill_runs
from aelab import data
from aelab.analysis import runs
from aelab.errors import AelabError
from aelab.stacked import configs, driver
from conftest import DATA, ROOT, experiment

SPEC = 'experiments/stacked_sparse_mnist.py:tiny'


@pytest.fixture(scope='module')
def stacked(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('stacked') / 'run'
  result = subprocess.run([sys.executable, '-m', 'aelab.run', f'--config={SPEC}',
                           f'--workdir={workdir}'], cwd=ROOT, env=kill_runs.env(),
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  return workdir, result.stdout


def test_the_report_and_summary_name_every_figure(stacked):
  workdir, stdout = stacked
  summary = json.loads((workdir / 'summary.json').read_text())
  assert summary['network'] == '784-32-16-10'
  assert [s['units'] for s in summary['stages']] == [32, 16]
  for key in ('frozen_features_softmax', 'fine_tuned', 'scratch'):
    assert 0.0 <= summary[key]['test_accuracy'] <= 1.0
    assert summary[key]['test_accuracy'] == json.loads(
        (workdir / summary[key]['workdir'] / 'summary.json').read_text())['test']['accuracy']
  assert summary['fine_tuned']['test_accuracy'] > 0.5   # well above chance after 30 iterations
  for line in ('stage 1 (32 units): test reconstruction mse', 'softmax on the frozen stacked '
               'features: test accuracy', 'fine-tuned stacked network: test accuracy',
               'same network from scratch: test accuracy'):
    assert line in stdout
  assert (workdir / 'plots' / 'filters_stage1.png').stat().st_size > 1000
  assert (workdir / 'plots' / 'finetune_accuracy.png').stat().st_size > 1000


def test_stage_2_trains_on_the_codes_of_stage_1(stacked):
  workdir, _ = stacked
  config = json.loads((workdir / 'stage2' / 'config.json').read_text())
  assert config['dataset'] == {'name': 'codes', 'path': str(workdir / 'stage1' / 'codes.npz')}
  assert config['model']['hidden'] == [16] and config['preprocessing'] == 'none'
  stage1 = runs.load(workdir / 'stage1')
  raw = data.load(experiment('stacked_sparse_mnist').dataset, seed=0)
  with np.load(workdir / 'stage1' / 'codes.npz') as codes:
    for split in ('train', 'val', 'test'):
      x = getattr(raw, split).x
      np.testing.assert_array_equal(codes[f'x_{split}'], runs.features(stage1, x, 'code'))
      np.testing.assert_array_equal(codes[f'y_{split}'], getattr(raw, split).y)
  stage2 = runs.load(workdir / 'stage2')
  assert stage2.feature_shape == (32,) and stage2.params['encoder_1']['kernel'].shape == (32, 16)


def test_fine_tuning_starts_from_the_pretrained_layers_and_frozen_keeps_them(stacked, tmp_path):
  workdir, _ = stacked
  config = experiment('stacked_sparse_mnist')
  config.stack.freeze_encoder = True
  for run in ('stage1', 'stage2', 'features'):
    shutil.copytree(workdir / run, tmp_path / run)
  finetune = configs.classifier(config, 'finetune')
  given = driver._given(tmp_path, 2, finetune)  # pylint: disable=protected-access
  assert set(given) == {'encoder_1', 'encoder_2', 'head'}
  from aelab.trainer import train
  frozen = configs.classifier(config, 'finetune')
  frozen.train.num_steps, frozen.evals = 10, {}  # one block moves the head; no accuracy curves
  train.train_and_evaluate(frozen, tmp_path / 'frozen', init_params=given)
  tuned = runs.load(tmp_path / 'frozen').params
  for k, stage in ((1, 'stage1'), (2, 'stage2')):
    pretrained = runs.load(workdir / stage).params['encoder_1']
    np.testing.assert_array_equal(tuned[f'encoder_{k}']['kernel'], pretrained['kernel'])
    np.testing.assert_array_equal(tuned[f'encoder_{k}']['bias'], pretrained['bias'])
  assert not np.array_equal(tuned['head']['kernel'], given['head']['kernel'])  # the head trains
  # Not frozen: the fine-tuning run's initial state holds exactly the given layers.
  from aelab.trainer.setup import build
  setup = build(configs.classifier(experiment('stacked_sparse_mnist'), 'finetune'))
  initial = setup.init(setup.init_rng, given).params
  for name in given:
    np.testing.assert_array_equal(initial[name]['kernel'], given[name]['kernel'])
  random_init = setup.init(setup.init_rng).params
  assert not np.array_equal(random_init['encoder_1']['kernel'], given['encoder_1']['kernel'])


def test_given_parameters_must_fit_the_model(stacked, tmp_path):
  workdir, _ = stacked
  config = configs.classifier(experiment('stacked_sparse_mnist'), 'finetune')
  from aelab.trainer import train
  wrong = {'encoder_1': runs.load(workdir / 'stage2').params['encoder_1']}
  with pytest.raises(AelabError, match=r"given parameters 'encoder_1' have shapes"):
    train.train_and_evaluate(config, tmp_path / 'x', init_params=wrong)
  with pytest.raises(AelabError, match="given parameters 'decoder_1' are not a layer"):
    train.train_and_evaluate(config, tmp_path / 'x', init_params={'decoder_1': wrong['encoder_1']})


def _interrupt(cmd, checkpoint_dir, how):
  """Starts the stacked run and sends `how` once `checkpoint_dir` exists; its stderr."""
  proc = subprocess.Popen(cmd, cwd=ROOT, env=kill_runs.env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 300
  while time.time() < deadline and not checkpoint_dir.is_dir():
    time.sleep(0.05)
  proc.send_signal(getattr(signal, how))
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == (75 if how == 'SIGTERM' else -9), err
  return err


def test_an_interrupted_stacked_run_resumes_where_it_stopped_and_ends_as_an_unbroken_one(
    stacked, tmp_path):
  """SIGTERM in stage 2, then kill -9 in the fine-tuning run: each rerun resumes there."""
  reference, _ = stacked
  workdir = tmp_path / 'run'
  cmd = [sys.executable, '-m', 'aelab.run', f'--config={SPEC}', f'--workdir={workdir}']
  err = _interrupt(cmd, workdir / 'stage2' / 'checkpoints' / '10', 'SIGTERM')
  assert f'{workdir}/stage2/checkpoints' in err
  assert not (workdir / 'features').exists()
  _interrupt(cmd, workdir / 'finetune' / 'checkpoints' / '10', 'SIGKILL')
  assert not (workdir / 'finetune' / 'summary.json').exists()
  result = subprocess.run(cmd, cwd=ROOT, env=kill_runs.env(), capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  resumed = {run: json.loads((workdir / run / 'summary.json').read_text())['resumed_from_step']
             for run in ('stage1', 'stage2', 'finetune')}
  assert resumed['stage1'] is None and resumed['stage2'] >= 10 and resumed['finetune'] >= 10
  for run in ('stage1', 'stage2', 'features', 'finetune', 'scratch'):
    assert kill_runs.same_run(reference / run, workdir / run)['params'], run
  want = json.loads((reference / 'summary.json').read_text())
  got = json.loads((workdir / 'summary.json').read_text())
  for key in ('frozen_features_softmax', 'fine_tuned', 'scratch'):
    assert got[key]['test_accuracy'] == want[key]['test_accuracy']


def test_a_bad_stacked_config_is_one_line_before_anything_is_written(tmp_path, capsys):
  from aelab import run
  for override, message in (
      ('--config.stack.layers=(32,0)', 'stack.layers[1] = 0; it must be an integer >= 1 (stack.layers = (32, 0))'),
      ('--config.stack.finetune.optimizer.name=adamax', "unknown optimizer 'adamax'")):
    with pytest.raises(SystemExit) as exited:  # the CLI's path, in this process
      run.run([f'--config={SPEC}', f'--workdir={tmp_path / "run"}', override])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and message in err, err
    assert len(err.splitlines()) == 1 and not (tmp_path / 'run').exists()


def test_every_stacked_variant_loads(monkeypatch):
  for arg in ('', 'tiny', 'posted', 'posted,tiny', 'fashion', 'posted,fashion'):
    configs.check(experiment('stacked_sparse_mnist', arg))
  for arg in ('', 'tiny', 'fashion'):
    configs.check(experiment('stacked_denoising_mnist', arg))
  assert os.environ['AELAB_DATA_DIR'] == str(DATA)


def test_codes_above_the_memory_limit_are_shards_the_next_runs_read(tmp_path, monkeypatch):
  """stack.codes_in_memory_gib = 0: stage 1's codes are a directory of shards (300 rows each
  here): every split's codes of the trained encoder, with their labels; stage 2 and the softmax
  on the frozen features train on them, read a window at a time."""
  from aelab import stacked as stacked_lib
  from aelab.data import codes
  monkeypatch.setattr(codes, 'SHARD_BYTES', 300 * 32 * 4)
  config = experiment('stacked_sparse_mnist', 'posted,tiny')
  config.stack.update(codes_in_memory_gib=0.0, scratch=False)
  for group in (config.stack.pretrain, config.stack.finetune, config.stack.features):
    group.train.num_steps = 10   # what is checked is where the codes go, not how well they train
  workdir = tmp_path / 'run'
  summary = stacked_lib.train_and_evaluate(config, workdir)
  directory = workdir / 'stage1' / 'codes'
  parts = sorted((directory / 'train').glob('part-*.npy'))
  assert not (workdir / 'stage1' / 'codes.npz').exists()
  stage1 = runs.load(workdir / 'stage1')
  raw = data.load(config.dataset, seed=0)
  n = len(raw.train)
  assert [len(np.load(p)) for p in parts] == [300] * (n // 300) + [n % 300] * (n % 300 > 0)
  np.testing.assert_allclose(np.concatenate([np.load(p) for p in parts]),
                             runs.features(stage1, raw.train.x, 'code'), atol=1e-6)
  np.testing.assert_array_equal(np.load(directory / 'test.npy'),
                                runs.features(stage1, raw.test.x, 'code'))
  with np.load(directory / 'labels.npz') as labels:
    for split in ('train', 'val', 'test'):
      np.testing.assert_array_equal(labels[f'y_{split}'], getattr(raw, split).y)
  for run, codes_of in (('stage2', 'stage1'), ('features', 'stage2')):  # stage 2's read from shards
    assert json.loads((workdir / run / 'config.json').read_text())['dataset']['path'] == \
        str(workdir / codes_of / 'codes')
  ds = data.load({'name': 'codes', 'path': str(directory)}, seed=0)
  assert len(ds.shards) == len(ds.shards.labels) == n and ds.value_range == (0.0, 1.0)
  # the softmax trained on the sharded codes with their labels (too briefly to be accurate;
  # that labels and rows agree is tests/test_npy_shards.py's)
  assert 0 <= summary['frozen_features_softmax']['test_accuracy'] <= 1


def test_sharded_codes_under_full_batch_training_are_one_line_before_anything_is_written(
    tmp_path):
  config = experiment('stacked_sparse_mnist')   # L-BFGS on full batches
  config.stack.codes_in_memory_gib = 0.0
  with pytest.raises(AelabError) as e:
    driver.train_and_evaluate(config, tmp_path / 'run')
  assert "stage 1's codes" in str(e.value) and 'train.batch_size = 0' in str(e.value)
  assert '\n' not in str(e.value) and not (tmp_path / 'run' / 'stage1').exists()
