"""The 'downstream' evaluator (a sparse dictionary's reconstruction spliced into the trained run
whose layer it was trained on), experiments/sae_mnist_layer.py end to end, and the frontier of
sparse-dictionary sweeps (aelab/analysis/frontier.py)."""

import dataclasses
import json
import types

import numpy as np
import pytest

from aelab import data, evaluators, models
from aelab.analysis import frontier, runs, splice
from aelab.config import defaults
from aelab.evaluators import downstream
from aelab.trainer.forward import Forward
from conftest import (experiment, one_line_error as _error, tiny_classifier,
                      train_on_test_data)

KEYS = {'fraction_recovered', 'downstream_original', 'downstream_zero_ablated',
        'downstream_spliced'}
ACCURACIES = {'downstream_accuracy_original', 'downstream_accuracy_zero_ablated',
              'downstream_accuracy_spliced'}


def _train(config, workdir):
  return workdir, train_on_test_data(config, workdir)


def _sae_config(run_dir, steps=60):
  config = experiment('sae_mnist_layer', 'tiny')
  config.dataset.run = str(run_dir)
  config.train.num_steps = steps
  return config


@pytest.fixture(scope='module')
def ae_dir(tmp_path_factory):
  """mnist_ae:tiny (784-32-8-32-784 on 1000 digits), 150 steps."""
  config = experiment('mnist_ae')
  config.train.update(progress=False, num_steps=150, checkpoint_every=0)
  config.evals = dict(test=defaults.evaluator('reconstruction', split='test'))
  return _train(config, tmp_path_factory.mktemp('downstream') / 'ae')[0]


@pytest.fixture(scope='module')
def sae_run(ae_dir, tmp_path_factory):
  """sae_mnist_layer:tiny (TopK, 128 latents) on layer 1 of ae_dir: (workdir, summary)."""
  return _train(_sae_config(ae_dir), tmp_path_factory.mktemp('downstream') / 'sae')


def _topk_reconstruct(params, k):
  """The TopK dictionary in numpy: x_hat = topk(relu((h - b_dec) W_enc + b_enc)) W_dec/|W_dec|
  + b_dec (preprocessing 'none')."""
  p = {name: np.asarray(v, np.float64) for name, v in params.items()}
  w_dec = p['W_dec'] / np.linalg.norm(p['W_dec'], axis=1, keepdims=True)

  def reconstruct(h):
    pre = (h - p['b_dec']) @ p['W_enc'] + p['b_enc']
    keep = np.argsort(-pre, axis=1)[:, :k]
    f = np.zeros_like(pre)
    rows = np.arange(len(pre))[:, None]
    f[rows, keep] = np.maximum(pre[rows, keep], 0.0)
    return f @ w_dec + p['b_dec']

  return reconstruct


def _context(sae, **dataset_fields):
  ds = data.load(sae.config.dataset, seed=int(sae.config.seed))
  ds = dataclasses.replace(ds, **dataset_fields)
  return evaluators.Context(config=sae.config, dataset=ds, forward=sae.forward, mesh=None,
                            unit_interval=False)


def _expected(ae_dir, reconstruct, split='test'):
  ae = runs.load(ae_dir)
  rows = getattr(data.load(ae.config.dataset, seed=int(ae.config.seed)), split)
  return splice.fraction_recovered(ae, 1, reconstruct, rows.x)


def _close(got, want):
  assert got['fraction_recovered'] == pytest.approx(want['fraction_recovered'], rel=1e-4)
  for case in ('original', 'zero_ablated', 'spliced'):
    assert got[f'downstream_{case}'] == pytest.approx(want[case], rel=1e-5)


def test_fraction_is_splice_of_the_dictionary(ae_dir, sae_run):
  """Built from a context and called on the trained state: splice.fraction_recovered with the
  dictionary's own reconstruction, computed here independently in numpy."""
  sae = runs.load(sae_run[0])
  built = evaluators.build({'down': {'type': 'downstream', 'batch_size': 300}}, _context(sae))
  assert [(e.name, e.split, e.every) for e in built] == [('down', 'test', 0)]
  got = built[0].run(types.SimpleNamespace(params=sae.params, stats={}), sae.prep)
  assert set(got) == KEYS and all(isinstance(v, float) for v in got.values())
  want = _expected(ae_dir, _topk_reconstruct(sae.params, sae.config.model.k))
  _close(got, want)
  assert 0 < got['fraction_recovered'] <= 1
  assert got['downstream_original'] < got['downstream_spliced'] < got['downstream_zero_ablated']
  # The evaluator's own reconstruct is what it scores with.
  ev = built[0].run
  fn = ev.reconstruction(types.SimpleNamespace(params=sae.params, stats={}), sae.prep)
  assert splice.fraction_recovered(ev.trained, 1, fn, ev.x)['fraction_recovered'] == (
      got['fraction_recovered'])


def test_sae_mnist_layer_tiny_writes_downstream_metrics(ae_dir, sae_run):
  workdir, summary = sae_run
  written = json.loads((workdir / 'summary.json').read_text())
  assert written['step'] == 60 and summary['test'] == written['test']
  test = written['test']
  assert KEYS <= set(test) and {'l0', 'variance_explained'} <= set(test)
  assert test['l0'] == pytest.approx(8, abs=1e-6)  # :tiny keeps k; latents 128
  sae = runs.load(workdir)
  assert sae.step == 60 and sae.feature_shape == (32,)
  want = _expected(ae_dir, _topk_reconstruct(sae.params, sae.config.model.k))
  _close(test, want)
  assert test['downstream_original'] == pytest.approx(
      json.loads((ae_dir / 'summary.json').read_text())['test']['mse'], rel=1e-4)


def test_classifier_run_has_accuracies(tmp_path):
  config = tiny_classifier(steps=100)
  clf_dir, clf = _train(config, tmp_path / 'clf')
  _, summary = _train(_sae_config(clf_dir, steps=30), tmp_path / 'sae')
  test = summary['test']
  assert KEYS | ACCURACIES <= set(test)
  assert test['downstream_accuracy_original'] == pytest.approx(clf['test']['accuracy'], abs=0.005)
  assert all(0 <= test[k] <= 1 for k in ACCURACIES)
  assert test['downstream_original'] < test['downstream_zero_ablated']


def test_build_errors_are_one_line(sae_run, ae_dir):
  sae = runs.load(sae_run[0])
  ctx = _context(sae)

  def build(c, split='test'):
    return downstream.Evaluator(c, split=split, batch_size=100)

  digits = data.load(runs.load(ae_dir).config.dataset, seed=0)
  assert _error(build, dataclasses.replace(ctx, dataset=digits)) == (
      "the downstream evaluator needs a model trained on a run's activations "
      "(dataset.name = 'activations'); this dataset is 'mnist'")
  clf = sae.config.copy_and_resolve_references()
  clf.model = defaults.model('classifier', hidden=(16,), classes=10)
  classifier = Forward(models.build(clf.model, sae.feature_shape), loss_fn=None)
  assert "model 'classifier' does not" in _error(
      build, dataclasses.replace(ctx, config=clf, forward=classifier))
  assert _error(build, ctx, split='valid') == (
      "unknown split 'valid'; valid splits: train, val, test")
  # Any run whose model continues from a layer can be spliced into, a dictionary's own too.
  into_sae = _context(sae, source={'name': 'activations', 'run': str(sae_run[0]),
                                   'layer': 'code', 'step': 0})
  assert build(into_sae).trained.model.dictionary() is not None
  gone = _context(sae, source={'name': 'activations', 'run': str(ae_dir / 'nowhere'),
                               'layer': 1, 'step': 0})
  assert 'holds no checkpoints' in _error(build, gone)


# --- the frontier ------------------------------------------------------------------------------

HEADER = ('index,name,model.k,status,val/loss,test/fraction_recovered,test/l0,'
          'test/variance_explained,wall_time_s,train_steps_per_s,error')


def _sweep(path, rows, header=HEADER):
  path.mkdir(parents=True)
  (path / 'results.csv').write_text('\n'.join([header, *rows]) + '\n')
  return path


def test_frontier_plot_and_table(tmp_path, capsys):
  topk = _sweep(tmp_path / 'topk', [
      '0,k=20,20,done,0.1,0.95,20.0,0.9,1,2,',
      '1,k=5,5,done,0.3,0.8,5.0,0.7,1,2,',
      '2,k=10,10,done,0.2,0.875,10.5,0.8125,1,2,',
      '3,k=40,40,failed,,,,,,,aelab: error: boom'])
  l1 = _sweep(tmp_path / 'l1', [
      '0,weight=0.1,0.1,done,0.5,7.25,0.625',
      '1,weight=0.01,0.01,done,0.4,30,0.875'],
      header='index,name,loss.sae_l1.weight,status,val/loss,test/l0,test/variance_explained')
  out = tmp_path / 'figs' / 'frontier.png'
  frontier.run(['--out', str(out), str(topk), str(l1) + '/'])
  printed = capsys.readouterr().out
  assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  lines = printed.strip().splitlines()
  assert lines[0] == '| sweep | point | l0 | variance_explained | fraction_recovered |'
  rows = [[c.strip() for c in line.strip('|').split('|')] for line in lines[2:]]
  assert rows == [['topk', 'k=5', '5', '0.7', '0.8'], ['topk', 'k=10', '10.5', '0.8125', '0.875'],
                  ['topk', 'k=20', '20', '0.9', '0.95'], ['l1', 'weight=0.1', '7.25', '0.625', ''],
                  ['l1', 'weight=0.01', '30', '0.875', '']]
  sweeps = [frontier.read(topk), frontier.read(l1)]
  assert [p.l0 for p in sweeps[0].points] == [5.0, 10.5, 20.0]
  assert [p.fraction_recovered for p in sweeps[1].points] == [None, None]
  assert 'fraction_recovered' not in frontier.table(sweeps[1:])


def test_frontier_errors_are_one_line(tmp_path, capsys):
  empty = tmp_path / 'empty'
  empty.mkdir()
  assert _error(frontier.read, empty) == (
      f'{empty}/results.csv is missing; run python -m aelab.sweep --workdir={empty} (or its '
      '--summarize) first')
  bare = _sweep(tmp_path / 'bare', ['0,k=5,5,done,0.1'],
                header='index,name,model.k,status,val/loss')
  assert 'has no column test/l0, test/variance_explained; the sweep needs the sae evaluator' in (
      _error(frontier.read, bare))
  failed = _sweep(tmp_path / 'failed', ['0,k=5,5,failed,,,,,,,boom'])
  assert 'no finished point with test/l0' in _error(frontier.main, ['--out=x.png', str(failed)])
  assert _error(frontier.main, ['--out=x.txt', str(failed)]) == (
      "--out='x.txt': the figure is written as .png, .pdf or .svg")
  with pytest.raises(SystemExit) as e:
    frontier.run([str(bare)])
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith('aelab: error: the following arguments are required: --out') and (
      err.count('\n') == 1)
