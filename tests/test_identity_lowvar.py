"""identity_lowvar: the same linear autoencoder fails on raw `lowvar` rows and succeeds with
per-sample normalisation; MSE alone hides the failure, R^2 of the variation shows it."""

import json

import pytest

from aelab.analysis import inputs, runs
from aelab.errors import AelabError
from aelab.trainer import train
from conftest import experiment

pytestmark = pytest.mark.quick  # the fast tier: python -m pytest -m quick


@pytest.fixture(scope='module')
def summaries(tmp_path_factory):
  out = {}
  for variant in ('raw', 'normalized'):
    config = experiment('identity_lowvar', f'{variant},tiny')
    config.train.progress = False
    workdir = tmp_path_factory.mktemp(variant)
    out[variant] = (train.train_and_evaluate(config, workdir), workdir)
  return out


def test_variants_differ_only_in_preprocessing():
  raw = experiment('identity_lowvar', 'raw').to_dict()
  norm = experiment('identity_lowvar', 'normalized').to_dict()
  assert (raw.pop('preprocessing'), norm.pop('preprocessing')) == ('none', 'per_sample')
  assert raw == norm
  assert raw['model']['hidden'] == (84,) and raw['model']['activation'] == 'linear'
  assert raw['model']['output_activation'] == 'linear'
  with pytest.raises(AelabError, match='raw or normalized'):
    experiment('identity_lowvar', 'raw,normalized')


def test_raw_training_has_tiny_mse_but_no_variation(summaries):
  test = summaries['raw'][0]['test']
  assert test['mse'] < 1e-5          # "the loss is tiny" ...
  assert test['r2'] < 0.2            # ... yet the reconstructions carry none of the variation


def test_normalized_training_reconstructs_the_variation(summaries):
  test = summaries['normalized'][0]['test']
  assert test['r2'] > 0.9
  assert test['mse'] < 0.1 * summaries['raw'][0]['test']['mse']


def test_plots_show_input_and_reconstruction(summaries):
  for summary, workdir in summaries.values():
    assert (workdir / 'plots' / 'reconstructions.png').stat().st_size > 5000
    assert json.loads((workdir / 'summary.json').read_text())['test'] == summary['test']


def test_the_inspected_reconstruction_is_the_evaluated_one(summaries):
  """runs.reconstruct inverts per_sample with each row's own statistics: same R^2 as evaluate."""
  summary, workdir = summaries['normalized']
  run = runs.load(workdir)
  x = inputs.from_split(run, 'test').x
  x_hat = runs.reconstruct(run, x)
  r2 = 1 - ((x_hat - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
  assert r2 == pytest.approx(summary['test']['r2'], abs=1e-4)
