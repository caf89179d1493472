"""Sparse dictionaries (aelab/models/sae.py, aelab/losses/sae_terms.py): each activation, the
decoder constraint, the STE, AuxK, the dead-latent statistics, training on toy ground truth."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import losses, models
from aelab.config import defaults
from aelab.errors import AelabError
from aelab.losses import sae_terms
from aelab.models import sae
from aelab.trainer import checkpoint, train
from conftest import DATA, ROOT, experiment, one_line_error

D, N = 8, 32


def _model(activation='topk', **fields):
  cfg = defaults.model('sae', latents=N, k=3, activation=activation, dead_steps=2, **fields)
  return models.build(cfg, (D,))


def _init(model, seed=0):
  return model.init(jax.random.PRNGKey(seed), jnp.zeros((1, D)))['params']


def _x(rows=16, seed=1):
  return jax.random.normal(jax.random.PRNGKey(seed), (rows, D))


def test_topk_keeps_the_k_largest_pre_activations_of_each_example():
  model = _model('topk')
  params = _init(model)
  x = _x()
  _, aux = model.apply({'params': params}, x)
  pre, f = np.asarray(aux['pre']), np.asarray(aux['code'])
  for row_pre, row_f in zip(pre, f):
    top = np.argsort(row_pre)[-3:]
    want = np.zeros(N)
    want[top] = np.maximum(row_pre[top], 0)
    np.testing.assert_allclose(row_f, want, rtol=1e-6)
  np.testing.assert_allclose(pre, (np.asarray(x) - params['b_dec']) @ params['W_enc']
                             + params['b_enc'], rtol=1e-5, atol=1e-6)


def test_batchtopk_keeps_k_times_batch_in_training_and_the_threshold_at_inference():
  model = _model('batchtopk')
  params, x = _init(model), _x(rows=16)
  stats = model.initial_stats()
  _, aux = model.apply({'params': params}, x, train=True, stats=stats)
  f = np.asarray(aux['code'])
  assert (f > 0).sum() == 3 * 16
  assert (f > 0).sum(axis=1).std() > 0  # per example it varies: a batch-level budget
  threshold = float(aux['stats']['threshold'])
  assert threshold == pytest.approx(np.sort(np.asarray(aux['pre']).ravel())[-3 * 16])
  _, inference = model.apply({'params': params}, x, stats={**stats, 'threshold': threshold})
  g = np.asarray(inference['code'])
  np.testing.assert_array_equal(g > 0, np.asarray(aux['pre']) > threshold)


def test_the_decoder_rows_are_unit_norm_and_their_gradient_has_no_radial_part():
  model = _model('topk')
  params, x = _init(model), _x()
  params = {**params, 'W_dec': params['W_dec'] * 3.0}  # raw rows of norm 3: normalised anyway
  recon, aux = model.apply({'params': params}, x)
  np.testing.assert_allclose(np.linalg.norm(aux['dictionary'], axis=1), 1.0, rtol=1e-6)

  def loss(p):
    r, _ = model.apply({'params': p}, x)
    return jnp.mean(jnp.square(r - x))

  g = jax.grad(loss)(params)['W_dec']
  radial = np.sum(np.asarray(g) * np.asarray(params['W_dec']), axis=1)
  np.testing.assert_allclose(radial, 0.0, atol=1e-7)
  assert np.abs(np.asarray(g)).max() > 1e-4


def test_the_encoder_starts_as_the_decoders_transpose():
  params = _init(_model('relu', normalize_decoder=False))
  np.testing.assert_array_equal(params['W_enc'], params['W_dec'].T)
  np.testing.assert_allclose(np.linalg.norm(params['W_dec'], axis=1), 1.0, rtol=1e-6)


def test_jumprelu_gradient_reaches_the_thresholds_through_the_estimator():
  z = jnp.array([[0.10, 0.52, 0.49, 0.7]])
  theta, eps = jnp.array([0.5, 0.5, 0.5, 0.5]), 0.1
  np.testing.assert_allclose(sae.jumprelu(z, theta, eps), [[0.0, 0.52, 0.0, 0.7]], rtol=1e-6)
  d_theta = jax.grad(lambda t: jnp.sum(sae.jumprelu(z, t, eps)))(theta)
  # K((z - theta) / eps) = 1 where |z - theta| < eps / 2: the second and third entries.
  np.testing.assert_allclose(d_theta, [0.0, -0.5 / 0.1, -0.5 / 0.1, 0.0], rtol=1e-6)
  d_l0 = jax.grad(lambda t: jnp.sum(sae.step_ste(z, t, eps)))(theta)
  np.testing.assert_allclose(d_l0, [0.0, -10.0, -10.0, 0.0], rtol=1e-6)
  d_z = jax.grad(lambda v: jnp.sum(sae.jumprelu(v, theta, eps)))(z)
  np.testing.assert_array_equal(d_z, [[0.0, 1.0, 0.0, 1.0]])


def test_l1_weights_each_latent_by_its_decoder_norm_and_normalized_mse_is_one_minus_fve():
  model = _model('relu', normalize_decoder=False)
  params, x = _init(model), _x()
  params = {**params, 'W_dec': params['W_dec'] * jnp.arange(1, N + 1)[:, None]}
  recon, aux = model.apply({'params': params}, x)
  out = losses.Outputs(x=x, recon=recon, aux=aux, params=params)
  f, norms = np.asarray(aux['code']), np.arange(1, N + 1)
  assert float(sae_terms.sae_l1(out)) == pytest.approx(np.mean((f * norms).sum(1)), rel=1e-5)
  xs, rs = np.asarray(x, np.float64), np.asarray(recon, np.float64)
  fvu = ((rs - xs) ** 2).sum() / ((xs - xs.mean(0)) ** 2).sum()
  assert float(sae_terms.normalized_mse(out)) == pytest.approx(fvu, rel=1e-5)


def test_auxk_trains_only_dead_latents_on_the_residual():
  model = _model('topk')
  params, x = _init(model), _x()
  stats = {'since_fired': jnp.array([5] * 4 + [0] * (N - 4), jnp.int32)}  # latents 0-3 dead
  recon, aux = model.apply({'params': params}, x, stats=stats)
  np.testing.assert_array_equal(aux['dead'], [True] * 4 + [False] * (N - 4))

  def aux_loss(p):
    r, a = model.apply({'params': p}, x, stats=stats)
    return sae_terms.auxk(losses.Outputs(x=x, recon=r, aux=a, params=p), k=2)

  assert float(aux_loss(params)) > 0
  g = np.asarray(jax.grad(aux_loss)(params)['W_enc'])
  assert np.abs(g[:, :4]).max() > 0 and np.abs(g[:, 4:]).max() == 0
  alive = {'since_fired': jnp.zeros(N, jnp.int32)}
  r, a = model.apply({'params': params}, x, stats=alive)
  assert float(sae_terms.auxk(losses.Outputs(x=x, recon=r, aux=a, params=params))) == 0.0


def test_steps_since_fired_count_up_and_reset():
  model = _model('topk')
  params = _init(model)
  stats = {'since_fired': jnp.full((N,), 7, jnp.int32)}
  _, aux = model.apply({'params': params}, _x(rows=4), train=True, stats=stats)
  fired = np.asarray(aux['code'] > 0).any(axis=0)
  np.testing.assert_array_equal(aux['stats']['since_fired'], np.where(fired, 0, 8))


def test_b_dec_starts_at_the_geometric_median_or_mean():
  rows = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [10.0, 10.0]])
  cfg = defaults.model('sae', b_dec_init='median')
  median = models.build(cfg, (2,)).data_init(lambda: rows)['b_dec']
  distances = lambda c: np.linalg.norm(rows - c, axis=1).sum()  # noqa: E731
  assert distances(median) < distances(rows.mean(0))
  assert distances(median) <= min(distances(median + d) for d in np.eye(2) * 1e-3) + 1e-9
  cfg.b_dec_init = 'mean'
  np.testing.assert_allclose(models.build(cfg, (2,)).data_init(lambda: rows)['b_dec'],
                             rows.mean(0))


def test_a_fresh_state_takes_b_dec_from_the_data_and_shapes_alone_do_not_compute_it():
  from aelab.trainer.setup import build
  config = experiment('sae_toy', 'tiny')
  config.model.b_dec_init = 'mean'
  s = build(config)
  s.state_sharding()  # jax.eval_shape of init: no pass over the data
  assert 'from_data' not in vars(s)
  state = s.init(s.init_rng)
  rows = np.asarray(s.prep.apply(s.dataset.train.x[:20000])[0], np.float64)
  np.testing.assert_allclose(state.params['b_dec'], rows.mean(0), rtol=1e-5, atol=1e-6)
  assert np.abs(rows.mean(0)).max() > 1e-3  # the data's mean is not the zeros of a plain init


@pytest.mark.parametrize('field,value,message', [
    ('activation', 'gelu', "model.activation of an sae 'gelu'"),
    ('k', 0, 'model.k = 0; it must be an integer >= 1'),
    ('k', 64, 'model.k = 64 exceeds model.latents = 32'),
    ('top_k', 'fast', "model.top_k 'fast'"),
])
def test_bad_sae_fields_are_one_line(field, value, message):
  cfg = defaults.model('sae', latents=N)
  cfg[field] = value
  with pytest.raises(AelabError, match=message.replace('(', r'\(')):
    models.build(cfg, (D,))


def test_sae_terms_on_another_model_are_one_line(tmp_path):
  config = experiment('mnist_ae')
  config.loss.sae_l1 = dict(weight=1.0)
  message = one_line_error(train.train_and_evaluate, config, tmp_path / 'run')
  assert 'loss term sae_l1 needs a sparse dictionary' in message


@pytest.fixture(scope='module')
def toy_topk(tmp_path_factory):
  """TopK on a small toy: 48 true features in 24 dimensions, 48 latents, 1500 steps."""
  config = experiment('sae_toy', 'topk')
  config.dataset.update(num_examples=12000, num_features=48, dims=24, probability=0.06)
  config.model.update(latents=48, k=3, dead_steps=100)
  config.loss.auxk.k = 16
  config.train.update(num_epochs=0, num_steps=1500, progress=False, checkpoint_every=500)
  config.evals.val.every = -1
  config.evals.plots.every = -1
  workdir = tmp_path_factory.mktemp('toy') / 'topk'
  return config, workdir, train.train_and_evaluate(config, workdir)


def test_topk_recovers_the_toy_features(toy_topk):
  _, workdir, summary = toy_topk
  test = summary['test']
  assert test['recovered'] >= 0.9 and test['mean_max_cosine'] > 0.95
  assert test['l0'] == pytest.approx(3.0, abs=1e-6)
  assert test['variance_explained'] > 0.8 and test['dead_fraction'] < 0.05
  assert (workdir / 'plots' / 'latent_density.png').exists()


def test_a_resumed_sae_run_ends_exactly_as_an_unbroken_one(toy_topk, tmp_path):
  config, workdir, _ = toy_topk
  stopped = train.train_and_evaluate(config, tmp_path / 'r', should_stop=lambda s: s >= 700)
  assert stopped['interrupted'] == 'should_stop'
  train.train_and_evaluate(config, tmp_path / 'r')
  a, b = (checkpoint.Checkpoints(w).restore_raw(1500)[1]['state']
          for w in (workdir, tmp_path / 'r'))
  assert set(a) == {'step', 'params', 'opt_state', 'rng', 'stats'}
  jax.tree.map(np.testing.assert_array_equal, a, b)


_SHARDED = """
import json, sys
sys.path.insert(0, 'tests')
from conftest import experiment
from aelab.trainer import train
config = experiment('sae_toy', 'tiny')
config.train.update(mesh=(('data', 2), ('model', 4)), sharding=(('.*', 'model'),))
config.evals.plots.every = -1
s = train.train_and_evaluate(config, sys.argv[1])
print(json.dumps({k: s[k] for k in ('param_bytes_per_device', 'mesh', 'devices')}))
"""


def test_a_dictionary_split_over_model_on_8_devices_trains_as_on_one(tmp_path):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', JAX_PLATFORMS='cpu',
             AELAB_DATA_DIR=str(DATA))
  out = subprocess.run([sys.executable, '-c', _SHARDED, str(tmp_path / 'split')], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  split = json.loads(out.stdout.strip().splitlines()[-1])
  assert split['mesh'] == {'data': 2, 'model': 4} and split['devices'] == 8
  config = experiment('sae_toy', 'tiny')
  config.evals.plots.every = -1
  one = train.train_and_evaluate(config, tmp_path / 'one')
  assert one['devices'] == 1
  a, b = (checkpoint.Checkpoints(tmp_path / d).restore_raw(60)[1]['state']
          for d in ('one', 'split'))
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6),
               a['params'], b['params'])
  np.testing.assert_array_equal(a['stats']['since_fired'], b['stats']['since_fired'])
  # W_enc [32, 128], W_dec [128, 32], b_enc [128] split 4 ways; b_dec [32] too.
  assert split['param_bytes_per_device'] == one['param_bytes_per_device'] // 4


def test_a_memory_mapped_npy_of_activations_trains_from_disk(tmp_path):
  rows = np.random.default_rng(0).normal(size=(3000, 16)).astype(np.float32)
  np.save(tmp_path / 'acts.npy', rows)
  config = experiment('sae_toy', 'tiny')
  config.dataset = defaults.dataset('npy')
  config.dataset.path = str(tmp_path / 'acts.npy')
  config.train.device_data = 'no'  # each block reads its rows from the file
  config.evals.plots.every = -1
  from aelab import data
  ds = data.load(config.dataset, seed=0)
  assert all(isinstance(s.x, np.memmap) for s in (ds.train, ds.val, ds.test))
  assert (len(ds.train), len(ds.val), len(ds.test)) == (2700, 150, 150)
  np.testing.assert_array_equal(ds.test.x, rows[-150:])
  summary = train.train_and_evaluate(config, tmp_path / 'run')
  assert summary['step'] == 60 and 'recovered' not in summary['test']  # no ground truth here
  assert 0 < summary['test']['variance_explained'] < 1
  np.savez(tmp_path / 'rows.npz', x=rows)
  assert 'is an .npz archive' in one_line_error(
      data.load, {'name': 'npy', 'path': str(tmp_path / 'rows.npz')}, seed=0)
  np.save(tmp_path / 'f64.npy', rows.astype(np.float64))
  with pytest.raises(AelabError, match='holds float64'):
    data.load({'name': 'npy', 'path': str(tmp_path / 'f64.npy')}, seed=0)
