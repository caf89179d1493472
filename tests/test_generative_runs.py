"""The generative autoencoders' tiny configs train end to end, report their bound, and resume
bit-identical to an unbroken run."""

import jax
import numpy as np
import pytest
from conftest import experiment

from aelab.trainer import checkpoint, train

# The kinds whose steps draw through more than the model's one noise stream (WAE's mmd through
# the same Outputs.rng as the dreg case's posterior samples; two stochastic layers). A VampPrior
# adds no state or stream of its own, so its resume is every model's (tests/test_faults.py).
RESUMED = [('iwae_mnist', 'tiny,two_layer,dreg'), ('wae_rae_mnist', 'tiny,model=rae_gp')]


def _config(name, arg):
  config = experiment(name, arg)
  config.train.update(progress=False, num_steps=20, steps_per_call=5, log_every=5)
  # the test split's loss only (the val split's evaluation is one more program to compile)
  evals = {k: v for k, v in config.evals.to_dict().items() if k != 'val'}
  config.evals = dict(evals, plots=dict(type='plots', every=-1))
  if 'iwae' in config.evals:
    config.evals.iwae.every = -1
  return config


@pytest.mark.parametrize('name, arg', RESUMED)
def test_a_resumed_run_ends_exactly_as_an_unbroken_one(name, arg, tmp_path):
  config = _config(name, arg)
  whole = train.train_and_evaluate(config, tmp_path / 'whole')
  stopped = train.train_and_evaluate(config, tmp_path / 'r', should_stop=lambda s: s >= 10)
  assert stopped['interrupted'] == 'should_stop'
  train.train_and_evaluate(config, tmp_path / 'r')
  a, b = (checkpoint.Checkpoints(w).restore_raw(20)[1]['state']
          for w in (tmp_path / 'whole', tmp_path / 'r'))
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert np.isfinite(whole['test']['loss'])


@pytest.mark.parametrize('arg', ['tiny'])   # (two layers: the resumed dreg run above)
def test_an_iwae_trains_and_its_bound_is_tighter_than_its_elbo(arg, tmp_path):
  config = experiment('iwae_mnist', arg)
  config.train.progress = False
  config.evals.plots.every = -1   # (samples of every model: tests/test_frechet.py)
  config.evals = {k: v for k, v in config.evals.to_dict().items() if k != 'val'}  # test's only
  summary = train.train_and_evaluate(config, tmp_path / 'run')
  test = summary['test']
  # an untrained model is at about 543 nats; 60 steps take it below 350 (1 layer: 230, 2: 290)
  assert test['iwae_nll'] < test['iwae_neg_elbo'] < 350.0
  assert 1 <= test['active_units'] <= 8   # of its 8 code units, it uses some after 60 steps


def test_a_fresh_state_puts_the_data_bias_in_place_and_keeps_every_other_parameter():
  from aelab.trainer.setup import build
  config = experiment('iwae_mnist', 'tiny,two_layer')
  s = build(config)
  data, zeros = s.init(s.init_rng), s.init(s.init_rng, from_data=False)
  rows = np.asarray(s.prep.apply(s.dataset.train.x[:20000])[0], np.float64)
  mean = np.clip(rows.reshape(len(rows), -1).mean(0), 0.001, 0.999)
  np.testing.assert_allclose(data.params['decoder_1']['out']['bias'], np.log(mean / (1 - mean)),
                             rtol=1e-5, atol=1e-5)
  data.params['decoder_1']['out']['bias'] = zeros.params['decoder_1']['out']['bias']
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, data.params, zeros.params))
