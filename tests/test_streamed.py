"""A streamed training set (dataset `synth_sae`, data.Stream): each step's rows generated on the
devices from the step's key, so a resumed run and runs trained together draw exactly the rows of
an unbroken lone run."""

import jax
import numpy as np
import pytest

import kill_runs
from aelab import data
from aelab.trainer import batches as batches_lib, setup as setup_lib, sharding, train
from conftest import experiment, one_line_error

SEEDS = (0, 1)


def _config(seed=0):
  config = experiment('sae_synth', 'tiny,batchtopk')
  config.seed = seed
  return config


@pytest.mark.quick
def test_step_t_draws_the_sample_of_fold_in_of_the_runs_key_and_t():
  config = _config()
  ds, mesh, b = data.load(config.dataset, config.seed), sharding.make_mesh(), 16
  source, keys = batches_lib.Streamed(ds.stream, b, config.seed, mesh).block(7, 3)
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), batches_lib.STREAM)
  steps = np.asarray(keys.at(np.int32(7)))
  np.testing.assert_array_equal(steps, [7, 8, 9])
  spec = sharding.batch_sharding(mesh)
  got = jax.jit(jax.vmap(lambda t: keys.batch(source, t, spec)['x']))(steps)
  want = jax.jit(jax.vmap(lambda t: ds.stream.sample(ds.stream.arrays, jax.random.fold_in(key, t),
                                                     b)))(steps)
  np.testing.assert_array_equal(got, want)
  assert got.shape == (3, b, 32) and not np.array_equal(got[0], got[1])


@pytest.mark.quick
def test_a_streamed_source_needs_a_step_count():
  config = _config()
  config.train.update(num_steps=0, num_epochs=3)
  message = one_line_error(setup_lib.build, config)
  assert 'streamed' in message and 'train.num_steps' in message


@pytest.fixture(scope='module')
def alone(tmp_path_factory):
  """Seed 0 trained alone, and seeds 0 and 1 trained together: (base directory, summaries)."""
  base = tmp_path_factory.mktemp('streamed')
  lone = train.train_and_evaluate(_config(0), base / 'alone0')
  together = train.train_together([_config(s) for s in SEEDS],
                                  [base / f'together{s}' for s in SEEDS])
  return base, [lone, *together]


def test_a_resumed_streamed_run_ends_exactly_as_an_unbroken_one(alone, tmp_path):
  base, summaries = alone
  stopped = train.train_and_evaluate(_config(), tmp_path, should_stop=lambda step: step == 20)
  assert stopped['checkpoint_step'] == 20
  assert train.train_and_evaluate(_config(), tmp_path)['resumed_from_step'] == 20
  assert kill_runs.same_run(base / 'alone0', tmp_path)['params']


def test_streamed_runs_trained_together_end_as_lone_runs(alone):
  """Seed 0 trained beside seed 1 ends as it does alone; seed 1 draws its own rows."""
  base, (lone, together0, together1) = alone
  assert kill_runs.same_run(base / 'alone0', base / 'together0')['params']
  assert together0['test'] == lone['test'] and lone['test']['mcc'] > 0
  assert together1['test'] != lone['test']


def test_ground_truth_read_from_files_scores_as_the_generated_source(alone, tmp_path):
  """The synthetic test rows saved as .npy, their true directions and codes as the npz of
  dataset.truth_path: the run's dictionary (through its SAELens files) scores the same there."""
  from aelab.analysis import runs, saelens
  from aelab.config import defaults
  base, summaries = alone
  ds = data.load(_config().dataset, 0)
  for name in ('train', 'val', 'test'):
    np.save(tmp_path / f'{name}.npy', getattr(ds, name).x)
  np.savez(tmp_path / 'truth.npz', directions=ds.truth, val_codes=ds.val.truth_codes,
           test_codes=ds.test.truth_codes)
  cfg = defaults.dataset('npy')
  cfg.update(path=str(tmp_path / 'train.npy'), val_path=str(tmp_path / 'val.npy'),
             test_path=str(tmp_path / 'test.npy'), truth_path=str(tmp_path / 'truth.npz'))
  saelens.write(runs.load(base / 'alone0'), tmp_path / 'saelens')
  got = saelens.evaluate(tmp_path / 'saelens', cfg)
  want = summaries[0]['test']
  for metric in ('mcc', 'uniqueness', 'precision', 'recall', 'f1', 'shrinkage', 'l0',
                 'variance_explained'):
    assert got[metric] == pytest.approx(want[metric], rel=1e-5, abs=1e-6), metric
