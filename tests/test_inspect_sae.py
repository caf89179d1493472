"""`python -m aelab.inspect` on sparse autoencoders: features (the latents), weights that
reproduce them by hand, and the `latents` verb (per-latent statistics, top-activating rows, the
image grid), with one-line errors."""


import numpy as np
import pytest

from aelab.analysis import inputs, latents, runs
from aelab.config import defaults
from aelab.errors import AelabError
from aelab.trainer import train
from conftest import DATA, experiment, read_table
from test_inspect import _cli

VARIANTS = {'topk': 'tiny', 'relu': 'tiny,l1', 'batchtopk': 'tiny,batchtopk',
            'jumprelu': 'tiny,jumprelu'}


def _train(config, workdir):
  config.evals.plots.every = -1
  summary = train.train_and_evaluate(config, workdir)
  return runs.load(workdir), summary


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
  """sae_toy:tiny runs on toy activations (d = 32, 128 latents), one per activation, trained
  when first asked for: {activation: (run, summary)}."""
  tmp = tmp_path_factory.mktemp('sae_toy')
  trained = {}

  def get(kind):
    if kind not in trained:
      trained[kind] = _train(experiment('sae_toy', VARIANTS[kind]), tmp / kind)
    return trained[kind]
  return get


@pytest.fixture(scope='module')
def mnist_run(tmp_path_factory):
  """sae_toy:tiny on the pixels of the tiny MNIST slice in tests/data (d = 784, 64 latents)."""
  tmp = tmp_path_factory.mktemp('sae_mnist')
  config = experiment('sae_toy')
  config.dataset = defaults.dataset('mnist')
  config.model.update(latents=64, k=8)
  config.loss.auxk.k = 16
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv('AELAB_DATA_DIR', str(DATA))
    mp.setenv('AELAB_CACHE_DIR', str(tmp / 'cache'))
    return _train(config, tmp / 'run')




def _test_rows(run):
  return inputs.from_split(run, 'test')


def _by_hand(w, x):
  """The latents from the exported weights, in numpy (float64), as the header says."""
  pre = (x.reshape(len(x), -1) - w['b_dec']) @ w['W_enc'].astype(np.float64) + w['b_enc']
  act = str(w['activation'])
  if act == 'relu':
    return np.maximum(pre, 0)
  if act == 'jumprelu':
    return pre * (pre > w['threshold'])
  if act == 'batchtopk' and 'batchtopk_threshold' in w:
    return np.where(pre > w['batchtopk_threshold'], np.maximum(pre, 0), 0)
  k = int(w['k'])
  top = np.argsort(-pre, axis=1, kind='stable')[:, :k]
  f = np.zeros_like(pre)
  rows = np.arange(len(pre))[:, None]
  f[rows, top] = np.maximum(pre[rows, top], 0)
  return f


# --- features and weights -------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['topk', 'batchtopk'])
def test_features_are_the_latents_of_the_runs_forward_pass(toy, tmp_path, kind):
  run, summary = toy(kind)
  x = _test_rows(run).x
  f = runs.features(run, x, 'code', batch_size=64)  # batching changes nothing
  _, aux = run.forward.model.apply({'params': run.params}, x, stats=run.model_stats)
  np.testing.assert_allclose(f, aux['code'], atol=1e-6)
  assert run.depth == 1 and f.shape == (len(x), 128)
  np.testing.assert_array_equal(runs.features(run, x, 1), f)
  # What the sae evaluator measured on the same split (with the trained BatchTopK threshold).
  assert (f > 0).sum(1).mean() == pytest.approx(summary['test']['l0'], abs=1e-4)
  if kind == 'topk':
    encoded = run.forward.encode(run.params, run.prep, x)
    np.testing.assert_allclose(f, encoded, atol=1e-6)
    assert ((f > 0).sum(1) <= 6).all()
  code, out, err = _cli('features', f'--workdir={run.workdir}', '--layer=code', '--split=test',
                        f'--out={tmp_path / "f.csv"}')
  assert code == 0 and 'wrote layer 1 features [200, 128]' in out, err
  header, table = read_table(tmp_path / 'f.csv')
  assert list(table)[:2] == ['DF.L1.C1', 'DF.L1.C2']
  np.testing.assert_array_equal(np.stack(list(table.values()), 1).astype(np.float32), f)
  text = '\n'.join(header)
  assert 'layer 1 of 1 (128 units, the code)' in text
  assert 'pre = (z - b_dec) @ W_enc + b_enc   [32 -> 128]' in text
  assert 'column DF.L1.C<j+1> holds latent j' in text


@pytest.mark.parametrize('kind', ['topk', 'relu', 'jumprelu', 'batchtopk'])
def test_exported_weights_reproduce_the_latents_by_hand(toy, tmp_path, kind):
  run, _ = toy(kind)
  x = _test_rows(run).x
  code, out, err = _cli('weights', f'--workdir={run.workdir}', f'--out={tmp_path / "w.npz"}')
  assert code == 0 and "wrote the 'sae' model (W_enc, b_enc, W_dec, b_dec" in out, err
  with np.load(tmp_path / 'w.npz') as npz:
    w = dict(npz)
  header = str(w['header'])
  assert 'pre = (z - b_dec) @ W_enc + b_enc' in header
  assert 'W_enc [32, 128] = [input, latent]' in header
  assert str(w['activation']) == kind
  f = runs.features(run, x, 'code')
  np.testing.assert_allclose(_by_hand(w, x), f, atol=1e-5)
  # The decoder exported is the one the forward pass uses: unit rows unless the decoder is free.
  norms = np.linalg.norm(w['W_dec'], axis=1)
  raw = np.asarray(run.params['W_dec'])
  if run.config.model.normalize_decoder:
    np.testing.assert_allclose(norms, 1, atol=1e-6)
    np.testing.assert_allclose(w['W_dec'], raw / np.linalg.norm(raw, axis=1, keepdims=True),
                               rtol=1e-6, atol=1e-7)
  else:
    np.testing.assert_array_equal(w['W_dec'], raw)
  z_hat = f @ w['W_dec'].astype(np.float64) + w['b_dec']
  np.testing.assert_allclose(z_hat, runs.reconstruct(run, x, 'normalized'), atol=1e-5)
  if kind == 'jumprelu':
    np.testing.assert_allclose(w['threshold'], np.exp(run.params['log_threshold']), rtol=1e-6)
    assert 'f = pre * (pre > threshold)' in header
  if kind == 'batchtopk':
    assert float(w['batchtopk_threshold']) > 0 and 'pre > batchtopk_threshold' in header


def test_weights_directory_holds_the_same_arrays(toy, tmp_path):
  run, _ = toy('jumprelu')
  assert _cli('weights', f'--workdir={run.workdir}', f'--out={tmp_path / "w.npz"}')[0] == 0
  assert _cli('weights', f'--workdir={run.workdir}', f'--out={tmp_path / "w"}')[0] == 0
  names = sorted(p.name for p in (tmp_path / 'w').iterdir())
  assert names == ['W_dec.csv', 'W_enc.csv', 'b_dec.csv', 'b_enc.csv', 'model.txt',
                   'preprocessing.csv', 'threshold.csv']
  with np.load(tmp_path / 'w.npz') as w:
    for key in ('W_enc', 'b_enc', 'W_dec', 'b_dec', 'threshold'):
      csv = np.loadtxt(tmp_path / 'w' / f'{key}.csv', delimiter=',', comments='#', ndmin=1)
      np.testing.assert_array_equal(csv.astype(np.float32).reshape(w[key].shape), w[key])
  first = (tmp_path / 'w' / 'W_enc.csv').read_text().splitlines()[0]
  assert first == "# W_enc, shape [32, 128] = [input, latent]: column j holds latent j's encoder"


# --- the latents verb -----------------------------------------------------------------------

def test_latent_statistics_are_counts_of_the_features(toy, tmp_path):
  run, summary = toy('topk')
  f = runs.features(run, _test_rows(run).x, 'code')
  code, out, err = _cli('latents', f'--workdir={run.workdir}', '--split=test',
                        f'--out={tmp_path / "lat.csv"}')
  assert code == 0, err
  assert out.startswith('aelab: wrote the statistics of 128 latents (')
  assert not (tmp_path / 'lat_top.csv').exists()  # no latents chosen: the table alone
  header, t = read_table(tmp_path / 'lat.csv')
  assert list(t) == ['latent', 'count', 'frequency', 'mean_active', 'max', 'decoder_norm',
                     'steps_since_fired', 'dead']
  fired = f > 0
  np.testing.assert_array_equal(t['latent'], np.arange(128))
  np.testing.assert_array_equal(t['count'], fired.sum(0))
  np.testing.assert_allclose(t['frequency'], fired.mean(0), rtol=1e-7)
  active_mean = np.where(fired, f, 0).sum(0, dtype=np.float64) / np.maximum(fired.sum(0), 1)
  np.testing.assert_allclose(t['mean_active'], active_mean, rtol=1e-6)
  np.testing.assert_allclose(t['max'], f.max(0), rtol=1e-7)
  np.testing.assert_allclose(t['decoder_norm'], 1, atol=1e-6)
  np.testing.assert_array_equal(t['steps_since_fired'], run.model_stats['since_fired'])
  np.testing.assert_array_equal(t['dead'], run.model_stats['since_fired'] >= 20)
  # the sae evaluator's count on the same split
  assert np.mean(t['count'] == 0) == pytest.approx(summary['test']['never_fired'])
  text = '\n'.join(header)
  assert 'model.dead_steps = 20' in text and 'count = rows where f_j > 0' in text
  assert latents.statistics(run, f)['count'].tolist() == t['count'].tolist()


def test_top_activating_rows_are_the_argsort_of_the_features(toy, tmp_path):
  run, _ = toy('relu')
  f = runs.features(run, _test_rows(run).x, 'code')
  chosen = [5, 77, 5, 0]
  code, out, err = _cli('latents', f'--workdir={run.workdir}', '--split=test', '--examples=7',
                        *[f'--latent={j}' for j in chosen], f'--out={tmp_path / "lat.csv"}')
  assert code == 0, err
  assert 'the top rows of 3 latents' in out and str(tmp_path / 'lat_top.csv') in out
  assert not (tmp_path / 'lat_top.png').exists()  # toy activations are not images
  header, t = read_table(tmp_path / 'lat_top.csv')
  assert list(t) == ['latent', 'rank', 'row', 'activation']
  assert list(dict.fromkeys(t['latent'].astype(int))) == [5, 77, 0]
  for j in (5, 77, 0):
    mine = t['latent'] == j
    expected = np.argsort(-f[:, j], kind='stable')[:7]
    expected = expected[f[expected, j] > 0]
    np.testing.assert_array_equal(t['row'][mine], expected)
    np.testing.assert_array_equal(t['rank'][mine], np.arange(1, len(expected) + 1))
    np.testing.assert_allclose(t['activation'][mine], f[expected, j], rtol=1e-7)
  # --top=N: the N latents firing most often, in the NPZ form.
  assert _cli('latents', f'--workdir={run.workdir}', '--split=test', '--top=4', '--examples=3',
              f'--out={tmp_path / "lat.npz"}')[0] == 0
  with np.load(tmp_path / 'lat.npz') as npz:
    counts = (f > 0).sum(0)
    assert list(npz['top_latents']) == list(np.argsort(-counts, kind='stable')[:4])
    for i, j in enumerate(npz['top_latents']):
      np.testing.assert_array_equal(npz['top_rows'][i], np.argsort(-f[:, j], kind='stable')[:3])
    np.testing.assert_array_equal(npz['count'], counts)
    assert 'decoder_norm' in str(npz['header'])
    assert 'rank 1 is the largest' in str(npz['top_header'])


def test_top_activating_images_of_mnist_latents(mnist_run, tmp_path):
  run, _ = mnist_run
  rows = _test_rows(run)
  f = runs.features(run, rows.x, 'code')
  code, out, err = _cli('latents', f'--workdir={run.workdir}', '--split=test', '--top=5',
                        f'--out={tmp_path / "lat.csv"}')
  assert code == 0, err
  png = tmp_path / 'lat_top.png'
  assert str(png) in out and png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['lat.csv', 'lat_top.csv', 'lat_top.png']
  header, t = read_table(tmp_path / 'lat_top.csv')
  assert list(t) == ['latent', 'rank', 'row', 'activation', 'label']
  rows_ = t['row'].astype(int)
  np.testing.assert_allclose(t['activation'], f[rows_, t['latent'].astype(int)], rtol=1e-7)
  np.testing.assert_array_equal(t['label'].astype(int), rows.y[rows_])
  assert f'the images: {png}' in '\n'.join(header)
  import matplotlib.image
  image = matplotlib.image.imread(png)
  assert image.shape[0] > 200 and image.shape[1] > 800  # 5 rows of 16 digits
  # The NPZ form carries the same labels, one per top row.
  assert _cli('latents', f'--workdir={run.workdir}', '--split=test', '--top=5',
              f'--out={tmp_path / "lat.npz"}')[0] == 0
  with np.load(tmp_path / 'lat.npz') as npz:
    top_rows, top_labels = npz['top_rows'], npz['top_labels']
  assert top_labels.shape == top_rows.shape == (5, 16)
  np.testing.assert_array_equal(top_labels.astype(int), rows.y[top_rows])


# --- errors ---------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def dense_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('dense')
  config = experiment('h2o_tanh')
  config.dataset.path = str(DATA / 'breast_cancer_head60.csv')
  config.train.update(progress=False, num_steps=20, steps_per_call=10)
  return _train(config, tmp / 'run')[0]


@pytest.mark.parametrize('argv,message', [
    (('--latent=128',), '--latent=128: no such latent; the run has 128 latents, numbered 0..127'),
    (('--latent=-1',), '--latent=-1: no such latent'),
    (('--latent=two',), "argument --latent: invalid int value: 'two'"),
    (('--top=0',), "--top=0: choose between 1 and the run's 128 latents"),
    (('--top=129',), "--top=129: choose between 1 and the run's 128 latents"),
    (('--top=3', '--latent=1'), 'not allowed with argument'),
    (('--examples=0', '--top=2'), '--examples=0: give a positive number'),
])
def test_latents_errors_are_one_line(toy, tmp_path, argv, message):
  run, _ = toy('topk')
  code, out, err = _cli('latents', f'--workdir={run.workdir}', '--split=test', *argv,
                        f'--out={tmp_path / "lat.csv"}')
  assert code == 2 and out == '' and len(err.strip().splitlines()) == 1
  assert err.startswith('aelab: error: ') and message in err, err
  assert list(tmp_path.iterdir()) == []


def test_the_latents_verb_needs_a_sparse_autoencoder(dense_run, tmp_path):
  code, out, err = _cli('latents', f'--workdir={dense_run.workdir}', '--split=test',
                        f'--out={tmp_path / "lat.csv"}')
  assert code == 2 and out == '' and len(err.strip().splitlines()) == 1
  assert "the latents verb needs a sparse dictionary (e.g. model 'sae')" in err
  assert "holds a 'dense' model" in err and list(tmp_path.iterdir()) == []
  with pytest.raises(AelabError, match='needs a sparse dictionary'):
    runs.require_dictionary(dense_run, 'per-latent statistics')
