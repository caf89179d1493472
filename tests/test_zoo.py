"""The zoo's experiment configs train from their `:tiny` variant on tiny real MNIST: loss falls, the
variant's own figures are reported, and its plots are written."""

import json

import numpy as np
import pytest

from aelab.analysis import inputs, runs as analysis_runs
from aelab.trainer import train
from aelab.errors import AelabError
from aelab.trainer.writers import read_jsonl
from conftest import DATA, experiment

ZOO = ('sparse_l1_mnist', 'sparse_kl_mnist', 'denoising_mnist', 'vae_mnist', 'conv_ae_mnist',
       'contractive_mnist')
PLOTTED = ('denoising_mnist', 'vae_mnist')   # the others skip plots to keep the suite fast


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  out = {}
  with pytest.MonkeyPatch.context() as mp:  # module scope: the autouse env fixture is not active yet
    mp.setenv('AELAB_DATA_DIR', str(DATA))
    mp.setenv('AELAB_OFFLINE', '1')
    for name in ZOO:
      workdir = tmp_path_factory.mktemp(name)
      config = experiment(name)
      config.train.progress = False
      if name not in PLOTTED:
        config.evals.plots.every = -1
      out[name] = workdir, train.train_and_evaluate(config, workdir)
  return out


@pytest.mark.parametrize('name', ZOO)
def test_tiny_config_trains_and_its_loss_falls(runs, name):
  workdir, summary = runs[name]
  rows = [r for r in read_jsonl(workdir / 'metrics.jsonl') if 'train/loss' in r]
  assert [r['step'] for r in rows] == [20, 40, 60]
  assert rows[-1]['train/loss'] < 0.8 * rows[0]['train/loss']
  test = summary['test']
  assert {'train/code_mean', 'train/code_near_zero'} <= set(rows[-1])
  assert json.loads((workdir / 'summary.json').read_text())['test'] == test
  if name != 'vae_mnist':  # the VAE's evaluation codes a binarized sample of each digit
    # The code statistics are those of the trained model's code of the test split.
    run = analysis_runs.load(workdir)
    code = analysis_runs.features(run, inputs.from_split(run, 'test').x, 'code')
    assert test['code_near_zero'] == pytest.approx(np.mean(np.abs(code) < 1e-2), abs=1e-6)
    assert test['code_mean'] == pytest.approx(np.mean(code), rel=1e-4, abs=1e-6)


def test_each_variant_reports_its_own_figures(runs):
  t = {name: runs[name][1]['test'] for name in ZOO}
  assert t['sparse_l1_mnist']['l1_activity'] > 0
  assert t['sparse_kl_mnist']['kl_sparsity'] > 0 and t['sparse_kl_mnist']['weight_decay'] > 0
  assert 0 < t['sparse_kl_mnist']['code_mean'] < 1   # sigmoid units
  assert t['contractive_mnist']['contractive'] > 0
  assert t['conv_ae_mnist']['bce'] < 0.45
  # Denoising: the corrupted-input figures exist, and noisy inputs reconstruct worse than clean.
  d = t['denoising_mnist']
  assert d['noisy_mse'] > d['mse'] * 0.5 and d['noisy_loss'] > 0
  # VAE: loss = reconstruction (nats) + KL; the IWAE bound is tighter than the ELBO.
  v = t['vae_mnist']
  assert v['loss'] == pytest.approx(v['reconstruction'] + v['vae_kl'], rel=1e-5)
  assert v['iwae_k'] == 20 and v['iwae_examples'] == 100
  assert v['iwae_nll'] < v['iwae_neg_elbo']
  assert 50 < v['iwae_nll'] < 550   # nats per 784-pixel binarized digit, after 60 steps


def test_plots_of_the_zoo(runs):
  workdir, _ = runs['denoising_mnist']
  for png in ('reconstructions', 'filters', 'latent', 'train_curves'):
    assert (workdir / 'plots' / f'{png}.png').stat().st_size > 1000
  workdir, _ = runs['vae_mnist']
  for png in ('samples', 'latent', 'filters', 'reconstructions'):
    assert (workdir / 'plots' / f'{png}.png').stat().st_size > 1000


def test_config_variants_combine_and_unknown_ones_are_errors():
  config = experiment('denoising_mnist', 'masking,plain,tiny')
  assert config.input_noise.corruption == 'masking' and config.input_noise.level == 0.25
  assert config.input_noise.train is False
  assert experiment('vae_mnist', 'fashion').dataset.name == 'fashion_mnist'
  assert experiment('sparse_l1_mnist', 'plain').loss.l1_activity.weight == 0.0
  with pytest.raises(AelabError, match="unknown variant 'big'.*tiny, plain"):
    experiment('sparse_l1_mnist', 'big')


def test_unknown_top_level_group_is_an_error(tmp_path):
  config = experiment('mnist_ae')
  config.noise = 1
  with pytest.raises(AelabError, match='unknown field noise in config.*evals, input_noise'):
    train.train_and_evaluate(config, tmp_path)
