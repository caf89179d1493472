"""`python -m aelab.inspect` and the API under it: features, weights, reconstructions, anomaly
scores of a trained run, the numbers they give, and clean one-line errors on bad input."""

import csv
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from aelab import inspect, preprocessing
from aelab.analysis import anomaly, inputs, runs
from aelab.trainer import train
from aelab.errors import AelabError
from conftest import DATA, ROOT, experiment, read_table

pytestmark = pytest.mark.quick  # the fast tier: python -m pytest -m quick

TABLE = DATA / 'breast_cancer.csv'


def _split_by_class(tmp):
  """Benign rows but a held-out fifth -> train.csv; held-out benign + all malignant -> eval.csv."""
  with open(TABLE, newline='') as f:
    rows = list(csv.reader(f))
  head, body = rows[0], rows[1:]
  benign = [r for r in body if r[-1] == 'benign']
  malignant = [r for r in body if r[-1] == 'malignant']
  random.Random(0).shuffle(benign)
  cut = len(benign) // 5
  for name, part in (('train.csv', benign[cut:]), ('eval.csv', benign[:cut] + malignant)):
    with open(tmp / name, 'w', newline='') as f:
      csv.writer(f).writerows([head] + part)
  return tmp / 'train.csv', tmp / 'eval.csv', cut, len(malignant)


@pytest.fixture(scope='module')
def benign_run(tmp_path_factory):
  """h2o_tanh:tiny trained on benign rows only: the run every test here inspects."""
  tmp = tmp_path_factory.mktemp('inspect')
  train_csv, eval_csv, n_benign, n_malignant = _split_by_class(tmp)
  config = experiment('h2o_tanh')
  config.dataset.path = str(train_csv)
  config.train.update(progress=False, num_steps=600, steps_per_call=100)
  config.evals.plots.every = -1
  summary = train.train_and_evaluate(config, tmp / 'run')
  return runs.load(tmp / 'run'), eval_csv, n_benign, n_malignant, summary


def _cli(*argv):
  """Runs the CLI in-process; returns (exit code, stdout, stderr)."""
  import contextlib
  import io
  out, err = io.StringIO(), io.StringIO()
  code = 0
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      inspect.run([str(a) for a in argv])
    except SystemExit as e:
      code = e.code
  return code, out.getvalue(), err.getvalue()


def _numbers(path, skip=('label',)):
  header, table = read_table(path)
  cols = [c for c in table if c not in skip]
  return header, cols, np.stack([table[c] for c in cols], axis=1)


# --- the API --------------------------------------------------------------------------------

def test_features_are_the_models_activations_on_preprocessed_rows(benign_run):
  run, eval_csv, *_ = benign_run
  rows = inputs.from_file(run, eval_csv)
  z, _ = preprocessing.apply('h2o', run.stats, rows.x)
  _, aux = run.forward.model.apply({'params': run.params}, z)
  assert run.depth == 2 and run.step == 600 and run.mode == 'h2o'
  h1 = runs.features(run, rows.x, 1, batch_size=50)  # batching must not change anything
  np.testing.assert_allclose(h1, aux['encoder'][0], atol=1e-6)
  np.testing.assert_allclose(runs.features(run, rows.x, 'code'), aux['code'], atol=1e-6)
  assert h1.shape == (len(rows.x), 25) and np.abs(h1).max() < 1  # tanh
  with pytest.raises(AelabError, match="the encoder has 2 layers; valid layers: 'code', 1, 2"):
    runs.features(run, rows.x, 3)


def test_reconstruct_inverts_the_preprocessing(benign_run):
  run, eval_csv, *_, summary = benign_run
  x = inputs.from_file(run, eval_csv).x
  z_hat = runs.reconstruct(run, x, space='normalized')
  x_hat = runs.reconstruct(run, x)
  expected = z_hat / run.stats['mul'] + run.stats['mean']
  assert np.abs((x_hat - expected) * run.stats['mul']).max() < 1e-6  # in units of each range
  # They are the reconstructions evaluate scored: the same test R^2 (input units).
  test_x = inputs.from_split(run, 'test').x
  x_hat = runs.reconstruct(run, test_x)
  r2 = 1 - np.sum((x_hat - test_x) ** 2) / np.sum((test_x - test_x.mean(0)) ** 2)
  # A trained network: H2O's 30-25-10-30 reaches 0.57 after these 600 steps (its initial
  # weights give -0.97; the mirrored 30-25-10-25-30 of earlier versions passed 0.7).
  assert r2 == pytest.approx(summary['test']['r2'], abs=1e-5) and r2 > 0.5


def test_anomaly_errors_are_h2os_reconstruction_mse(benign_run):
  run, eval_csv, *_ = benign_run
  x = inputs.from_file(run, eval_csv).x
  z = (x - run.stats['mean']) * run.stats['mul']
  z_hat = runs.reconstruct(run, x, space='normalized')
  per_feature = anomaly.errors(run, x, per_feature=True)
  np.testing.assert_allclose(per_feature, (z_hat - z) ** 2, rtol=1e-5, atol=1e-12)
  np.testing.assert_allclose(anomaly.errors(run, x), ((z_hat - z) ** 2).mean(1), rtol=1e-5)
  in_units = anomaly.errors(run, x, space='input')
  np.testing.assert_allclose(in_units, ((runs.reconstruct(run, x) - x) ** 2).mean(1), rtol=1e-4)
  train_x = inputs.from_split(run, 'train').x
  cut = anomaly.threshold(run, 0.9)
  assert np.mean(anomaly.errors(run, train_x) > cut) == pytest.approx(0.1, abs=0.01)


def test_auroc_counts_ties_half_and_checks_its_input():
  assert anomaly.auroc([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1]) == 1.0
  assert anomaly.auroc([0.4, 0.3, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
  assert anomaly.auroc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5
  assert anomaly.auroc([0.1, 0.5, 0.3, 0.5], [0, 1, 0, 0]) == pytest.approx(2.5 / 3)
  with pytest.raises(AelabError, match='both positive and negative'):
    anomaly.auroc([0.1, 0.2], [1, 1])


def test_scores_separate_a_held_out_class_and_injected_outliers(benign_run):
  """Trained on benign tumours only: malignant ones reconstruct worse, and so do benign rows
  with one feature pushed 3 training ranges away."""
  run, eval_csv, n_benign, n_malignant, _ = benign_run
  rows = inputs.from_file(run, eval_csv)
  malignant = rows.positive('malignant')
  assert malignant.sum() == n_malignant and (~malignant).sum() == n_benign
  err = anomaly.errors(run, rows.x)
  assert anomaly.auroc(err, malignant) > 0.9
  benign = rows.x[~malignant]
  rng = np.random.default_rng(0)
  outliers = benign.copy()
  cols = rng.integers(0, benign.shape[1], len(benign))
  outliers[np.arange(len(benign)), cols] += 3.0 / run.stats['mul'][cols]
  scores = anomaly.errors(run, np.concatenate([benign, outliers]))
  assert anomaly.auroc(scores, np.r_[np.zeros(len(benign)), np.ones(len(benign))]) > 0.99


# --- the CLI --------------------------------------------------------------------------------

def test_cli_features_csv_and_npz_hold_the_same_numbers(benign_run, tmp_path):
  run, eval_csv, *_ = benign_run
  code, out, err = _cli('features', f'--workdir={run.workdir}', '--layer=2', f'--input={eval_csv}',
                        f'--out={tmp_path / "h2.csv"}')
  assert code == 0, err
  assert 'wrote layer 2 features [' in out
  header, cols, values = _numbers(tmp_path / 'h2.csv')
  assert cols == [f'DF.L2.C{j}' for j in range(1, 11)]
  assert header[0].startswith('aelab features: layer 2 of 2 (10 units, the code)')
  assert any('z = (x - mean) * mul' in line for line in header)
  assert any('h2 = tanh(h1 @ encoder_2/kernel + encoder_2/bias)' in line for line in header)
  assert _cli('features', f'--workdir={run.workdir}', '--layer=code', f'--input={eval_csv}',
              f'--out={tmp_path / "h2.npz"}')[0] == 0
  with np.load(tmp_path / 'h2.npz') as npz:
    np.testing.assert_array_equal(values.astype(np.float32), npz["features"])  # %.9g round-trips
    assert list(npz['label'][:1]) == ['benign'] and 'layer 2 of 2' in str(npz['header'])
  np.testing.assert_allclose(values, runs.features(run, inputs.from_file(run, eval_csv).x, 2))


def test_cli_weights_state_their_orientation_and_match_the_params(benign_run, tmp_path):
  run, *_ = benign_run
  assert _cli('weights', f'--workdir={run.workdir}', f'--out={tmp_path / "w.npz"}')[0] == 0
  assert _cli('weights', f'--workdir={run.workdir}', f'--out={tmp_path / "w"}')[0] == 0
  with np.load(tmp_path / 'w.npz') as w:
    assert list(w['layers']) == ['encoder_1', 'encoder_2', 'decoder_1']  # H2O's 30-25-10-30
    assert list(w['activations']) == ['tanh'] * 3
    assert w['encoder_1/kernel'].shape == (30, 25) and w['decoder_1/kernel'].shape == (10, 30)
    np.testing.assert_array_equal(w['encoder_1/kernel'], run.params['encoder_1']['kernel'])
    np.testing.assert_array_equal(w['mul'], run.stats['mul'])
    assert 'kernel is [in, out]' in str(w['header']) and 'h @ kernel + bias' in str(w['header'])
    assert 'z_hat = tanh(h2 @ decoder_1/kernel + decoder_1/bias)   [10 -> 30]' in str(w['header'])
    kernel_csv = np.loadtxt(tmp_path / 'w' / 'encoder_1.kernel.csv', delimiter=',')
    np.testing.assert_array_equal(kernel_csv.astype(np.float32), w['encoder_1/kernel'])
    bias_csv = np.loadtxt(tmp_path / 'w' / 'decoder_1.bias.csv', delimiter=',')
    np.testing.assert_array_equal(bias_csv.astype(np.float32), w['decoder_1/bias'])
    _, table = read_table(tmp_path / 'w' / 'preprocessing.csv')
    assert table['feature'][0] == 'mean_radius'
    np.testing.assert_array_equal(table['mean'].astype(np.float32), w['mean'])
  first = (tmp_path / 'w' / 'encoder_1.kernel.csv').read_text().splitlines()[0]
  assert first == ('# encoder_1 kernel, shape [30, 25] = [in, out]: row i holds the weights from '
                   'input unit i, column j those into output unit j')
  # A second export replaces an aelab weights directory, but never a foreign one.
  assert _cli('weights', f'--workdir={run.workdir}', f'--out={tmp_path / "w"}')[0] == 0
  (tmp_path / 'mine').mkdir()
  (tmp_path / 'mine' / 'notes.txt').write_text('keep')
  code, _, err = _cli('weights', f'--workdir={run.workdir}', f'--out={tmp_path / "mine"}')
  assert code == 2 and 'not an aelab weights directory' in err
  assert (tmp_path / 'mine' / 'notes.txt').read_text() == 'keep'


def test_cli_anomaly_writes_the_space_threshold_and_auroc(benign_run, tmp_path):
  run, eval_csv, n_benign, n_malignant, _ = benign_run
  out_csv = tmp_path / 'scores.csv'
  code, out, err = _cli('anomaly', f'--workdir={run.workdir}', f'--input={eval_csv}',
                        f'--out={out_csv}', '--per-feature', '--threshold=0.99',
                        '--positive=malignant')
  assert code == 0, err
  header, table = read_table(out_csv)
  text = '\n'.join(header)
  assert "in normalized space (preprocessing 'h2o': z = (x - mean) * mul" in text
  assert 'the 0.99 quantile of the errors of the run\'s' in text
  x = inputs.from_file(run, eval_csv).x
  err_api = anomaly.errors(run, x)
  np.testing.assert_allclose(table['Reconstruction.MSE'], err_api, rtol=1e-6)
  np.testing.assert_allclose(table['reconstr_mean_area.SE'],
                             anomaly.errors(run, x, per_feature=True)[:, 3], rtol=1e-6)
  cut = anomaly.threshold(run, 0.99)
  np.testing.assert_array_equal(table['is_anomaly'], (err_api > cut).astype(float))
  auc = anomaly.auroc(err_api, table['label'] == 'malignant')
  assert f'AUROC = {auc:.4f}' in text and f'AUROC {auc:.4f}' in out and auc > 0.9
  assert list(table)[-1] == 'label' and (table['label'] == 'malignant').sum() == n_malignant
  assert _cli('anomaly', f'--workdir={run.workdir}', '--split=test', '--space=input',
              f'--out={tmp_path / "s.npz"}')[0] == 0
  with np.load(tmp_path / 's.npz') as npz:
    assert 'in input units (preprocessing inverted)' in str(npz['header'])
    np.testing.assert_allclose(npz['error'], anomaly.errors(run, inputs.from_split(run, 'test').x,
                                                            space='input'), rtol=1e-6)


def test_cli_reconstruct_writes_input_units_with_the_feature_names(benign_run, tmp_path):
  run, eval_csv, *_ = benign_run
  assert _cli('reconstruct', f'--workdir={run.workdir}', f'--input={eval_csv}',
              f'--out={tmp_path / "r.csv"}')[0] == 0
  header, cols, values = _numbers(tmp_path / 'r.csv')
  assert cols[:2] == ['mean_radius', 'mean_texture'] and len(cols) == 30
  assert header[0].startswith('aelab reconstructions in input units')
  np.testing.assert_allclose(values, runs.reconstruct(run, inputs.from_file(run, eval_csv).x),
                             rtol=1e-6)


def _table_rows():
  with open(TABLE, newline='') as f:
    return list(csv.reader(f))[:30]


def _write(path, rows):
  with open(path, 'w', newline='') as f:
    csv.writer(f).writerows(rows)
  return path


@pytest.mark.parametrize('case,message', [
    ('missing column', 'the header lacks 1 of the 30 columns the model was trained on: mean_area'),
    ('no header, 29 columns', '29 feature columns per row'),
    ('empty cell', "row 8, column 'mean_texture': empty cell"),
    ('text cell', "row 8, column 'mean_texture': 'abc' is not a number"),
    ('nan cell', "row 8, column 'mean_texture': 'nan' is not a finite float32 number"),
    ('short row', 'row 8: 30 cells, expected 31'),
])
def test_bad_csv_is_one_clear_error_and_leaves_no_file(benign_run, tmp_path, case, message):
  run, *_ = benign_run
  rows = _table_rows()
  if case == 'missing column':
    rows = [r[:3] + r[4:] for r in rows]
  elif case == 'no header, 29 columns':
    rows = [r[1:-1] for r in rows[1:]]
  elif case == 'short row':
    rows[7] = rows[7][:-1]
  else:
    rows[7][1] = {'empty cell': '', 'text cell': 'abc', 'nan cell': 'nan'}[case]
  bad = _write(tmp_path / 'bad.csv', rows)
  out_dir = tmp_path / 'out'
  out_dir.mkdir()
  (out_dir / 'scores.csv').write_text('previous result\n')
  for verb, extra in (('anomaly', ()), ('features', ('--layer=1',))):
    code, out, err = _cli(verb, f'--workdir={run.workdir}', f'--input={bad}', *extra,
                          f'--out={out_dir / "scores.csv"}')
    assert code == 2 and out == ''
    assert err.startswith('aelab: error: ') and len(err.strip().splitlines()) == 1
    assert message in err, err
  assert sorted(os.listdir(out_dir)) == ['scores.csv']  # no temporary or partial file
  assert (out_dir / 'scores.csv').read_text() == 'previous result\n'


def test_inputs_match_training_columns_by_name(benign_run, tmp_path):
  """Reordered columns and an extra ID column are fine: columns are matched by name."""
  run, eval_csv, *_ = benign_run
  with open(eval_csv, newline='') as f:
    rows = list(csv.reader(f))
  order = list(reversed(range(len(rows[0]))))
  shuffled = [['id'] + [r[i] for i in order] for r in rows]
  for i, r in enumerate(shuffled[1:]):
    r[0] = f'patient-{i}'
  x1 = inputs.from_file(run, eval_csv).x
  x2 = inputs.from_file(run, _write(tmp_path / 'shuffled.csv', shuffled)).x
  np.testing.assert_array_equal(x1, x2)
  np.savez(tmp_path / 'rows.npz', x=x1[:, :29])
  with pytest.raises(AelabError, match='has 29 values per row .* trained on 30 features'):
    inputs.from_file(run, tmp_path / 'rows.npz')


@pytest.mark.parametrize('argv,message', [
    (('features', '--layer=1', '--split=test', '--out=x.txt'), 'name the output file .csv or .npz'),
    (('features', '--layer=1', '--out=x.csv'), 'one of the arguments --input --split is required'),
    (('features', '--layer=3', '--split=test', '--out={tmp}/f.csv'), 'the encoder has 2 layers'),
    (('features', '--layer=1', '--split=test', '--step=7', '--out={tmp}/f.csv'),
     'no checkpoint at step 7; available steps: 600'),
    (('anomaly', '--split=test', '--threshold=1.5', '--out={tmp}/a.csv'), 'quantile = 1.5; it must be a finite number in (0, 1)'),
    (('anomaly', '--split=test', '--positive=cancer', '--out={tmp}/a.csv'),
     "positive class 'cancer' is not a label"),
    (('reconstruct', '--split=test', '--space=logits', '--out={tmp}/r.csv'), 'invalid choice'),
])
def test_cli_usage_errors_are_one_line(benign_run, tmp_path, argv, message):
  run, *_ = benign_run
  argv = [a.replace('{tmp}', str(tmp_path)) for a in argv]
  code, out, err = _cli(*argv, f'--workdir={run.workdir}')
  assert code == 2 and out == '' and len(err.strip().splitlines()) == 1
  assert err.startswith('aelab: error: ') and message in err, err
  assert list(tmp_path.iterdir()) == []


def test_a_workdir_without_checkpoints_is_a_clear_error(tmp_path):
  code, _, err = _cli('weights', f'--workdir={tmp_path / "nothing"}', f'--out={tmp_path / "w.npz"}')
  assert code == 2 and 'holds no checkpoints' in err
  assert not (tmp_path / 'nothing').exists() and not (tmp_path / 'w.npz').exists()


def test_the_real_command_line(benign_run, tmp_path):
  """One subprocess: the module runs as `python -m aelab.inspect`, errors without a traceback."""
  run, eval_csv, *_ = benign_run
  bad = _write(tmp_path / 'bad.csv', [r[:5] for r in _table_rows()])
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, '-m', 'aelab.inspect', 'anomaly',
                           f'--workdir={run.workdir}', f'--input={bad}',
                           f'--out={tmp_path / "a.csv"}'], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 2 and 'Traceback' not in result.stderr
  assert result.stderr.startswith('aelab: error: ')
  assert 'the header lacks 25 of the 30' in result.stderr
  assert not (tmp_path / 'a.csv').exists()
