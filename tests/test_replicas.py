"""Runs that differ only in their seed, trained together in one jitted program, against the same
runs trained one by one; and the pca evaluator against numpy."""

import json

import numpy as np
import pytest

import kill_runs
from aelab.errors import AelabError
from aelab.trainer import checkpoint, replicas, train
from conftest import DATA, experiment

SEEDS = (0, 1, 2)


def _config(seed, name='mnist_ae'):
  config = experiment(name)
  config.seed = seed
  config.train.progress = False
  config.evals.plots.every = -1
  return config


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  base = tmp_path_factory.mktemp('replicas')
  with pytest.MonkeyPatch.context() as mp:  # module scope: the autouse env fixture is not active yet
    mp.setenv('AELAB_DATA_DIR', str(DATA))
    together = train.train_together([_config(s) for s in SEEDS],
                                                    [base / f'together{s}' for s in SEEDS])
    alone = [train.train_and_evaluate(_config(s), base / f'alone{s}') for s in SEEDS]
  return base, together, alone


def test_each_run_ends_exactly_as_if_it_had_trained_alone(runs):
  """by='map' (the default): each run's computation is a lone run's, so every number is equal."""
  base, together, alone = runs
  for s, t, a in zip(SEEDS, together, alone):
    assert kill_runs.same_run(base / f'alone{s}', base / f'together{s}') == {
        'params': True, 'metrics': True, 'tensorboard': True}
    assert t['test'] == a['test'] and t['val'] == a['val']
    assert t['trained_with'] == 3 and t['param_count'] == a['param_count']
  # Different seeds really are different runs: their own splits, orders and initial weights.
  assert together[0]['test']['loss'] != together[1]['test']['loss']


def test_vmapped_runs_end_as_lone_runs_to_float_tolerance(runs, tmp_path):
  base, _, alone = runs
  dirs = [tmp_path / f'vmap{s}' for s in SEEDS]
  together = train.train_together([_config(s) for s in SEEDS], dirs, how='vmap')
  for s, d, t, a in zip(SEEDS, dirs, together, alone):
    mine, lone = kill_runs.final_state(d), kill_runs.final_state(base / f'alone{s}')
    for key in mine:  # batched matmuls round differently: after 60 steps, float tolerance
      np.testing.assert_allclose(mine[key], lone[key], rtol=1e-5, atol=1e-6, err_msg=key)
    for metric, value in a['test'].items():
      assert t['test'][metric] == pytest.approx(value, rel=1e-5, abs=1e-7), metric


def test_each_workdir_reads_as_a_lone_run(runs):
  base, together, _ = runs
  workdir = base / 'together1'
  assert json.loads((workdir / 'config.json').read_text())['seed'] == 1
  assert json.loads((workdir / 'summary.json').read_text())['test'] == together[1]['test']
  summary = train.train_and_evaluate(_config(1), workdir)  # a lone rerun sees a finished run
  assert summary['already_complete'] and summary['test'] == together[1]['test']


def test_a_stopped_group_resumes_together_to_the_same_end(runs, tmp_path):
  base, _, _ = runs
  dirs = [tmp_path / f'run{s}' for s in SEEDS]
  out = train.train_together([_config(s) for s in SEEDS], dirs,
                                             should_stop=lambda step: step == 30)
  assert [o['interrupted'] for o in out] == ['should_stop'] * 3 and out[0]['step'] == 30
  # One run is behind (its newest checkpoint lost): all resume from the step every run has.
  with checkpoint.Checkpoints(dirs[2]) as ckpts:
    assert ckpts.all_steps() == [30]
  import shutil
  shutil.rmtree(dirs[2] / 'checkpoints' / '30')
  out = train.train_together([_config(s) for s in SEEDS], dirs)
  assert [o['step'] for o in out] == [60] * 3 and out[0]['resumed_from_step'] is None
  for s, d in zip(SEEDS, dirs):
    assert kill_runs.same_run(base / f'together{s}', d) == {
        'params': True, 'metrics': True, 'tensorboard': True}


def test_only_runs_that_differ_in_the_seed_train_together(tmp_path):
  other = _config(1)
  other.optimizer.learning_rate = 3e-3
  with pytest.raises(AelabError, match='differ in the seed alone; .* differs in optimizer'):
    train.train_together([_config(0), other], [tmp_path / 'a', tmp_path / 'b'])
  with pytest.raises(AelabError, match='distinct seeds'):
    train.train_together([_config(0), _config(0)], [tmp_path / 'a', tmp_path / 'b'])
  fsdp = [_config(0), _config(1)]
  for c in fsdp:
    c.train.sharding = (('.*', 'fsdp'),)
  with pytest.raises(AelabError, match='keep their parameters replicated'):
    train.train_together(fsdp, [tmp_path / 'a', tmp_path / 'b'])


def test_pca_evaluator_matches_numpy(tmp_path):
  from aelab import data, evaluators, preprocessing
  from aelab.config import defaults
  config = experiment('tabular_ae')
  ds = data.load(config.dataset, seed=0)
  prep = preprocessing.Preprocessor.fit('standardize', ds.train.x)
  ctx = evaluators.Context(config=config, dataset=ds, forward=None, mesh=None, unit_interval=False)
  d = ds.train.x.shape[1]
  full = evaluators.build({'pca': defaults.evaluator('pca', components=d)}, ctx)[0].run(None, prep)
  assert full['pca_mse'] < 1e-9 and full['pca_r2'] > 1 - 1e-9   # every component: exact
  one = evaluators.build({'pca': defaults.evaluator('pca', components=1)}, ctx)[0].run(None, prep)
  z = (ds.train.x - prep.stats['mean']) / prep.stats['std']
  zt = (ds.test.x - prep.stats['mean']) / prep.stats['std']
  mean = z.mean(0)
  v = np.linalg.svd(z - mean, full_matrices=False)[2][:1]
  x_hat = (mean + (zt - mean) @ v.T @ v) * prep.stats['std'] + prep.stats['mean']
  assert one['pca_mse'] == pytest.approx(np.mean((x_hat - ds.test.x) ** 2), rel=1e-4)
  assert 0 < one['pca_r2'] < full['pca_r2'] and one['pca_components'] == 1
  with pytest.raises(AelabError, match=r'components = 31; it must be an integer in \[1, 30\]'):
    evaluators.build({'pca': defaults.evaluator('pca', components=31)}, ctx)
