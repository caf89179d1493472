"""The frechet evaluator (aelab/evaluators/frechet.py): the Fréchet distance and k-NN precision
and recall against closed forms, and the evaluator on tiny trained models (a VAE sampled from its
prior, a plain autoencoder from an ex-post Gaussian mixture) with its cached feature net."""

import json

import numpy as np
import pytest
from scipy import linalg

from aelab.config import defaults
from aelab.evaluators import frechet
from conftest import experiment, one_line_error, train_on_test_data

TINY_NET = dict(feature_hidden=(32,), feature_epochs=1)


def test_fd_of_a_set_with_itself_is_zero():
  x = np.random.default_rng(0).standard_normal((2000, 16)) @ np.diag(np.linspace(0.1, 3, 16))
  assert frechet.fd(x, x) == pytest.approx(0.0, abs=1e-6)


def test_fd_of_diagonal_gaussians_is_the_closed_form():
  m1, m2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, 1.0, 1.0])
  v1, v2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
  want = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
  got = frechet.frechet_distance(m1, np.diag(v1), m2, np.diag(v2))
  assert got == pytest.approx(want, rel=1e-12)


def test_fd_of_full_covariances_matches_a_direct_computation():
  rng = np.random.default_rng(1)
  a, b = rng.standard_normal((6, 6)), rng.standard_normal((6, 6))
  s1, s2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
  m1, m2 = rng.standard_normal(6), rng.standard_normal(6)
  root = linalg.sqrtm(s1 @ s2)
  want = np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * root.real)
  assert frechet.frechet_distance(m1, s1, m2, s2) == pytest.approx(want, rel=1e-9)


def test_fd_of_samples_approaches_that_of_their_gaussians():
  rng = np.random.default_rng(2)
  x = rng.standard_normal((200000, 2)) * [1.0, 2.0]
  y = rng.standard_normal((200000, 2)) * [2.0, 2.0] + [1.0, 0.0]
  assert frechet.fd(x, y) == pytest.approx(1.0 + 1.0, abs=0.03)  # 1^2 + (1 - 2)^2


def test_precision_and_recall_of_identical_sets_are_one():
  x = np.random.default_rng(3).standard_normal((500, 8))
  assert frechet.precision_recall(x, x.copy(), k=3) == (1.0, 1.0)


def test_precision_and_recall_of_far_apart_sets_are_zero():
  rng = np.random.default_rng(4)
  x, y = rng.standard_normal((400, 8)), rng.standard_normal((300, 8)) + 100.0
  assert frechet.precision_recall(x, y, k=3) == (0.0, 0.0)


def test_a_subset_has_precision_one_and_recall_below_one():
  rng = np.random.default_rng(5)
  x = np.concatenate([rng.standard_normal((300, 4)), rng.standard_normal((300, 4)) + 50.0])
  precision, recall = frechet.precision_recall(x, x[:300], k=3)  # one of the two clusters
  assert precision == 1.0
  assert recall == pytest.approx(0.5, abs=0.01)


def test_knn_radii_in_chunks_match_one_block(monkeypatch):
  x = np.random.default_rng(6).standard_normal((300, 5))
  whole = frechet.knn_radii(x, 3)
  monkeypatch.setattr(frechet, 'CHUNK_BYTES', 8 * 300 * 7)  # 7 rows a chunk
  np.testing.assert_allclose(frechet.knn_radii(x, 3), whole)
  d = ((x[:, None] - x[None]) ** 2).sum(-1)
  np.testing.assert_allclose(whole, np.sort(d, axis=1)[:, 3], rtol=1e-9, atol=1e-12)


def _with_fd(name: str, samples: int = 300):
  config = experiment(name)
  config.train.progress = False
  config.evals.fd = defaults.evaluator('frechet', samples=samples, batch_size=250, **TINY_NET)
  return config


@pytest.fixture(scope='module')
def two_runs(tmp_path_factory):
  """A tiny VAE and a tiny plain autoencoder trained with the frechet evaluator, in order, in one
  cache: the second finds the first's feature net."""
  base = tmp_path_factory.mktemp('frechet')
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv('AELAB_CACHE_DIR', str(base / 'cache'))
    out = {}
    for name in ('vae_mnist', 'mnist_ae'):
      out[name] = (base / name, train_on_test_data(_with_fd(name), base / name))
  return base / 'cache', out


@pytest.mark.parametrize('name, from_prior', [('vae_mnist', 1.0), ('mnist_ae', 0.0)])
def test_the_evaluator_gives_finite_figures(two_runs, name, from_prior):
  _, runs = two_runs
  workdir, summary = runs[name]
  test = summary['test']
  for key in ('fd_samples', 'fd_recon', 'fd_train'):
    assert np.isfinite(test[key]) and test[key] >= 0, (key, test[key])
  for key in ('sample_precision', 'sample_recall', 'feature_accuracy'):
    assert 0.0 <= test[key] <= 1.0, (key, test[key])
  assert test['feature_accuracy'] > 0.3  # 1 epoch of 1000 digits: far above chance
  assert test['samples_from_prior'] == from_prior
  written = json.loads((workdir / 'frechet_test.json').read_text())
  assert written['fd_samples'] == test['fd_samples']
  assert written['sampler'].startswith('prior' if from_prior else 'ex-post Gaussian mixture')
  assert (workdir / 'plots' / 'samples.png').is_file()
  assert (workdir / 'plots' / 'traversals.png').is_file()


def test_the_feature_net_is_trained_once_and_cached(two_runs):
  cache, runs = two_runs
  nets = sorted((cache / 'feature_nets').iterdir())
  assert [p.name.split('-')[0] for p in nets] == ['mnist']  # one net, no temporary left over
  first, second = (json.loads((runs[n][0] / 'frechet_test.json').read_text())['feature_net']
                   for n in ('vae_mnist', 'mnist_ae'))
  assert first['trained_now'] and not second['trained_now']
  assert first['directory'] == second['directory'] == str(nets[0])
  assert first['train_s'] == second['train_s'] and first['accuracy'] == second['accuracy']
  info = json.loads((nets[0] / 'feature_net.json').read_text())
  assert info['recipe']['model']['hidden'] == [32] and info['recipe']['train']['num_epochs'] == 1


def test_a_second_process_that_loses_the_race_uses_the_winners_net(tmp_path, monkeypatch):
  from aelab import data
  from aelab.evaluators import feature_net
  monkeypatch.setenv('AELAB_CACHE_DIR', str(tmp_path))
  config = experiment('mnist_ae')
  rec = feature_net.recipe((8,), 1)
  dataset = data.load(config.dataset, seed=0)
  real_train = feature_net._train

  def train_while_another_finishes(cfg, final):  # the other process renames its net first
    assert real_train(cfg, final)
    (final / 'winner').write_text('')
    return real_train(cfg, final)  # trains, finds the winner's in place, keeps it

  monkeypatch.setattr(feature_net, '_train', train_while_another_finishes)
  net = feature_net.get(config.dataset, rec, dataset)
  assert (net.directory / 'winner').exists()
  assert [p.name for p in tmp_path.joinpath('feature_nets').iterdir()] == [net.directory.name]
  assert net.features(dataset.test.x[:5]).shape == (5, 8)


def test_a_dataset_without_labels_or_a_model_without_decoder_is_a_one_line_error(tmp_path):
  from aelab.trainer import setup
  config = _with_fd('mnist_ae')
  config.dataset = defaults.dataset('lowvar')
  config.dataset.num_examples = 200
  config.model.output_activation = 'linear'
  config.loss = defaults.loss(reconstruction=dict(weight=1.0, kind='mse'))
  assert 'has none' in one_line_error(setup.build, config, tmp_path)
  config = _with_fd('mnist_ae')
  config.model = defaults.model('classifier', hidden=(16,), classes=10)
  config.loss = defaults.loss(softmax_cross_entropy=dict(weight=1.0))
  assert 'no decoder' in one_line_error(setup.build, config, tmp_path)


def test_tabular_data_are_measured_too(tmp_path):
  config = _with_fd('mnist_ae', samples=150)
  config.dataset = defaults.dataset('blobs')
  config.preprocessing = 'standardize'
  config.model = defaults.model('dense', hidden=(16, 4), activation='tanh',
                                output_activation='linear')
  config.loss = defaults.loss(reconstruction=dict(weight=1.0, kind='mse'))
  config.evals = dict(fd=config.evals.fd)
  test = train_on_test_data(config, tmp_path / 'run')['test']
  assert test['samples_from_prior'] == 0.0
  assert all(np.isfinite(test[k]) for k in ('fd_samples', 'fd_recon', 'fd_train'))


def test_an_interrupted_training_leaves_nothing_and_stale_temporaries_go(tmp_path, monkeypatch):
  import os

  from aelab import data
  from aelab.evaluators import feature_net
  from aelab.trainer import train
  monkeypatch.setenv('AELAB_CACHE_DIR', str(tmp_path))
  config = experiment('mnist_ae')
  rec = feature_net.recipe((8,), 1)
  dataset = data.load(config.dataset, seed=0)
  final = feature_net.cache_root() / feature_net.key(dataset, rec)
  stale, fresh = (final.parent / f'.{final.name}.host.{pid}.x' for pid in (1, 2))
  for d in (stale, fresh):
    d.mkdir(parents=True)
  os.utime(stale, (0, 0))
  monkeypatch.setattr(train, 'train_and_evaluate', lambda c, w: {'interrupted': 'SIGTERM'})
  assert feature_net.get(config.dataset, rec, dataset) is None
  assert sorted(p.name for p in final.parent.iterdir()) == [fresh.name]  # a live one stays
