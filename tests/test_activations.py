"""The `activations` data source (a layer of a trained run as a dataset) and splicing a
reconstruction back into the run (aelab/analysis/splice.py): the source's arrays are the run's
features, the spliced network reproduces the run, identity / zero / PCA reconstructions recover
all / none / part of the run's metric, and bad input is a one-line error."""

import dataclasses

import numpy as np
import pytest

from aelab import data
from aelab.analysis import runs, splice
from aelab.config import defaults
from aelab.trainer import train
from conftest import (experiment, one_line_error as _error, tiny_classifier,
                      train_on_test_data)


def _train(config, workdir):
  train_on_test_data(config, workdir)
  return workdir


def _quiet(config, steps=60):
  config.train.update(progress=False, num_steps=steps)
  config.evals = dict(test=defaults.evaluator('reconstruction', split='test'))
  return config


@pytest.fixture(scope='module')
def ae_dir(tmp_path_factory):
  """mnist_ae:tiny (784-32-8-32-784 on 1000 digits), 300 steps, checkpoints at 100, 200, 300."""
  config = _quiet(experiment('mnist_ae'), steps=300)
  config.train.checkpoint_every = 100
  return _train(config, tmp_path_factory.mktemp('activations') / 'ae')


@pytest.fixture(scope='module')
def classifier_dir(tmp_path_factory):
  """mnist_ae:tiny's digits, classified by 784-32-softmax(10) (300 steps)."""
  config = tiny_classifier(steps=300)
  return _train(config, tmp_path_factory.mktemp('activations') / 'classifier')


def _digits(run):
  """The run's own dataset (its config, its seed)."""
  return data.load(run.config.dataset, seed=int(run.config.seed))


def _pca(h_train, r):
  """Rank-r PCA of h_train: h -> mean + (h - mean) V V^T."""
  mean = h_train.mean(axis=0)
  v = np.linalg.svd(h_train - mean, full_matrices=False)[2][:r].T
  return lambda h: mean + (h - mean) @ v @ v.T


# --- the data source ---------------------------------------------------------------------------


@pytest.mark.parametrize('layer', ['1', 'code', 2])
def test_source_splits_are_the_runs_features(ae_dir, layer):
  run, cfg = runs.load(ae_dir), defaults.dataset('activations')
  cfg.run = str(ae_dir)
  if isinstance(layer, str):
    cfg.layer = layer
  ds = data.load(cfg if isinstance(layer, str) else {**cfg.to_dict(), 'layer': layer}, seed=7)
  digits = _digits(run)
  width = 32 if layer == '1' else 8
  assert ds.name == 'activations' and ds.feature_shape == (width,) and ds.value_range is None
  assert ds.num_classes == digits.num_classes == 10
  for split in ('train', 'val', 'test'):
    got, rows = getattr(ds, split), getattr(digits, split)
    assert got.x.dtype == np.float32 and got.x.shape == (len(rows), width)
    np.testing.assert_array_equal(got.x, runs.features(run, rows.x, layer))
    np.testing.assert_array_equal(got.y, rows.y)
  assert ds.source == {'name': 'activations', 'run': str(ae_dir.resolve()),
                       'layer': 1 if layer == '1' else layer, 'step': 300,
                       'dataset': digits.source}


def test_source_step_picks_the_checkpoint(ae_dir):
  ds = data.load({'name': 'activations', 'run': str(ae_dir), 'layer': 'code', 'step': 200}, 0)
  early = runs.load(ae_dir, step=200)
  assert ds.source['step'] == 200
  np.testing.assert_array_equal(ds.test.x, runs.features(early, _digits(early).test.x, 'code'))
  assert not np.array_equal(ds.test.x, runs.features(runs.load(ae_dir), _digits(early).test.x,
                                                     'code'))


def test_a_run_trains_on_the_activations(ae_dir, tmp_path):
  """A sparse-ish autoencoder on the code layer trains and evaluates like any run."""
  config = _quiet(experiment('mnist_ae'), steps=20)
  config.dataset = defaults.dataset('activations')
  config.dataset.update(run=str(ae_dir), layer='1')
  config.model = defaults.model('dense', hidden=(64,), activation='relu',
                                output_activation='linear')
  config.loss = defaults.loss(reconstruction=dict(weight=1.0, kind='mse'),
                              l1_activity=dict(weight=1e-3))
  summary = train.train_and_evaluate(config, tmp_path / 'sae')
  sae = runs.load(tmp_path / 'sae')
  assert summary['step'] == 20 and sae.feature_shape == (32,)
  assert sae.meta['dataset']['run'] == str(ae_dir.resolve())


def test_source_errors_are_one_line(ae_dir, tmp_path):
  load = lambda **f: data.load({'name': 'activations', **f}, seed=0)  # noqa: E731
  assert _error(load) == 'dataset.run is required: the workdir of a trained aelab run'
  assert 'is not a trained aelab run' in _error(load, run=str(tmp_path / 'nowhere'))
  assert "unknown layer 3: the encoder has 2 layers; valid layers: 'code', 1, 2" in _error(
      load, run=str(ae_dir), layer='3')
  assert "dataset.layer = 'first'; it must be an integer >= 1 (1 is the first encoder layer), or " \
      "'code'" in _error(
      load, run=str(ae_dir), layer='first')
  assert 'has no checkpoint at step 45; available steps: 100, 200, 300' in _error(
      load, run=str(ae_dir), step=45)
  assert 'dataset.step = -1; it must be an integer >= 0' in _error(load, run=str(ae_dir), step=-1)


# --- splicing ----------------------------------------------------------------------------------


def test_unspliced_network_reproduces_the_run(ae_dir, classifier_dir):
  ae, clf = runs.load(ae_dir), runs.load(classifier_dir)
  x = _digits(ae).test.x
  want = runs.reconstruct(ae, x, space='normalized').reshape(len(x), -1)
  for layer in (1, 'code'):
    np.testing.assert_allclose(splice.outputs(ae, x, layer, batch_size=128), want, atol=1e-5)
  np.testing.assert_allclose(splice.outputs(clf, x, 'code'), runs.outputs(clf, x)['recon'],
                             atol=1e-5)


@pytest.mark.parametrize('which, layer', [('ae', 1), ('ae', 'code'), ('classifier', 'code')])
def test_identity_recovers_all_and_zero_recovers_nothing(ae_dir, classifier_dir, which, layer):
  run = runs.load(ae_dir if which == 'ae' else classifier_dir)
  test = _digits(run).test
  kept = splice.fraction_recovered(run, layer, lambda h: h, test.x, test.y, batch_size=200)
  assert kept['metric'] == ('mse' if which == 'ae' else 'cross_entropy')
  assert kept['spliced'] == kept['original'] < kept['zero_ablated']
  assert kept['fraction_recovered'] == pytest.approx(1.0, abs=1e-6)
  zeroed = splice.fraction_recovered(run, layer, lambda h: 0 * h, test.x, test.y)
  assert zeroed['fraction_recovered'] == pytest.approx(0.0, abs=1e-6)
  assert zeroed['original'] == pytest.approx(kept['original'], rel=1e-6)


@pytest.mark.parametrize('which, layer, ranks', [('ae', 'code', (2, 4)), ('ae', 1, (2, 4)),
                                                 ('classifier', 1, (2, 16))])
def test_pca_recovers_more_with_more_components(ae_dir, classifier_dir, which, layer, ranks):
  run = runs.load(ae_dir if which == 'ae' else classifier_dir)
  digits = _digits(run)
  h_train = runs.features(run, digits.train.x, layer)
  recovered = [splice.fraction_recovered(run, layer, _pca(h_train, r), digits.test.x,
                                         digits.test.y)['fraction_recovered'] for r in ranks]
  assert 0 < recovered[0] < recovered[1] < 1, recovered


def test_classifier_metric_is_its_own_cross_entropy_and_accuracy(classifier_dir):
  run = runs.load(classifier_dir)
  test = _digits(run).test
  probs = runs.outputs(run, test.x)['recon']
  out = splice.fraction_recovered(run, 'code', _pca(runs.features(run, test.x, 1), 4),
                                  test.x, test.y)
  assert out['accuracy_original'] == np.mean(probs.argmax(axis=1) == test.y)
  assert out['original'] == pytest.approx(-np.mean(np.log(probs[np.arange(len(test.y)),
                                                                test.y])), rel=1e-5)
  assert out['accuracy_original'] > 0.5
  assert out['accuracy_zero_ablated'] < out['accuracy_spliced'] <= 1
  assert set(out) == {'metric', 'original', 'zero_ablated', 'spliced', 'fraction_recovered',
                         'accuracy_original', 'accuracy_zero_ablated', 'accuracy_spliced'}


def test_splice_errors_are_one_line(ae_dir, classifier_dir):
  ae, clf = runs.load(ae_dir), runs.load(classifier_dir)
  x, y = _digits(ae).test.x[:10], _digits(ae).test.y[:10]
  same = lambda h: h  # noqa: E731
  assert "unknown layer 5: the encoder has 2 layers; valid layers: 'code', 1, 2" in _error(
      splice.fraction_recovered, ae, 5, same, x)
  assert 'needs the labels y' in _error(splice.fraction_recovered, clf, 'code', same, x)
  assert 'y must be 10 integer labels in 0..9' in _error(
      splice.fraction_recovered, clf, 'code', same, x, y[:5])
  assert 'the spliced activations have shape (10, 4)' in _error(
      splice.fraction_recovered, ae, 1, lambda h: h[:, :4], x)
  assert 'non-finite' in _error(splice.fraction_recovered, ae, 1, lambda h: h * np.nan, x)
  assert 'x holds no rows' in _error(splice.fraction_recovered, ae, 1, same, x[:0])
