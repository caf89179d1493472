"""Sparse dictionaries (aelab/models/sae.py, aelab/losses/sae_terms.py): each activation, the
decoder constraint, the STE, AuxK, the dead-latent statistics, gated and Matryoshka dictionaries,
fractional BatchTopK k, training on toy ground truth."""

import json
import os
import re
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
  cfg = defaults.model('sae', **{'latents': N, 'k': 3, 'activation': activation, 'dead_steps': 2,
                                 **fields})
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
    ('k', 0, 'model.k = 0; it must be a number > 0'),
    ('k', 64, 'model.k = 64 exceeds model.latents = 32'),
    ('k', 2.5, 'model.k = 2.5; topk keeps the k largest of each example, so k must be a whole'),
    ('matryoshka_widths', (16, 8, 32), 'model.matryoshka_widths = (16, 8, 32); the prefix sizes '
                                       'must be strictly increasing'),
    ('matryoshka_widths', (8, 16), 'must be model.latents = 32, e.g. (8, 16, 32)'),
    ('top_k', 'fast', "model.top_k 'fast'"),
])
def test_bad_sae_fields_are_one_line(field, value, message):
  cfg = defaults.model('sae', latents=N)
  cfg[field] = value
  with pytest.raises(AelabError, match=re.escape(message)):
    models.build(cfg, (D,))


def test_sae_terms_on_another_model_are_one_line(tmp_path):
  config = experiment('mnist_ae')
  config.loss.sae_l1 = dict(weight=1.0)
  message = one_line_error(train.train_and_evaluate, config, tmp_path / 'run')
  assert 'loss term sae_l1 needs a sparse dictionary' in message


def _outputs(model, params, x, **apply):
  recon, aux = model.apply({'params': params}, x, **apply)
  return losses.Outputs(x=x, recon=recon, aux=aux, params=params)


def _gated():
  """A gated dictionary with free decoder norms (rows of norm 1..N) and its gate, magnitude
  biases and scales away from their zero start: (model, params)."""
  model = _model('gated', normalize_decoder=False)
  params = _init(model)
  rng = np.random.default_rng(0)
  return model, {**params, 'W_dec': params['W_dec'] * jnp.arange(1, N + 1)[:, None],
                 **{k: jnp.asarray(rng.normal(scale=0.5, size=N), jnp.float32)
                    for k in ('b_gate', 'r_mag', 'b_mag')}}


def _numpy(params):
  return {k: np.asarray(v, np.float64) for k, v in params.items()}


@pytest.mark.quick
def test_gated_forward_and_its_terms_match_numpy():
  model, params = _gated()
  x = _x()
  out = _outputs(model, params, x)
  p, z = _numpy(params), np.asarray(x, np.float64)
  pi_gate = (z - p['b_dec']) @ p['W_enc'] + p['b_gate']
  pi_mag = (z - p['b_dec']) @ (p['W_enc'] * np.exp(p['r_mag'])) + p['b_mag']
  f = (pi_gate > 0) * np.maximum(pi_mag, 0)
  assert 0 < (f > 0).sum() < (pi_gate > 0).sum()  # the gate opens, the magnitude cuts some
  np.testing.assert_allclose(out.aux['code'], f, atol=1e-5)
  np.testing.assert_allclose(out.recon, f @ p['W_dec'] + p['b_dec'], atol=1e-4)
  gate, norms = np.maximum(pi_gate, 0), np.arange(1, N + 1)
  assert float(sae_terms.gated_l1(out)) == pytest.approx((gate * norms).sum(1).mean(), rel=1e-5)
  total = ((z - z.mean(0)) ** 2).sum()
  assert float(sae_terms.gated_aux(out)) == pytest.approx(
      ((gate @ p['W_dec'] + p['b_dec'] - z) ** 2).sum() / total, rel=1e-5)
  assert model.layer_activations() == {'1': 'gated', 'code': 'gated'}


@pytest.mark.quick
def test_gated_aux_trains_the_gate_through_a_frozen_decoder():
  model, params = _gated()
  x = _x()

  def grad(term):
    return jax.grad(lambda p: term(_outputs(model, p, x)))(params)

  g = grad(sae_terms.gated_aux)
  assert np.abs(g['W_dec']).max() == 0 and np.abs(g['b_mag']).max() == 0
  assert np.abs(g['b_gate']).max() > 0
  # b_dec learns only as the encoder's centering, pi_gate = (x - b_dec) W_enc + b_gate: its
  # gradient is -W_enc (dL/db_gate), nothing from the frozen output bias.
  np.testing.assert_allclose(g['b_dec'], -params['W_enc'] @ g['b_gate'], rtol=1e-4, atol=1e-6)
  g_l1 = grad(sae_terms.gated_l1)  # the decoder norms it weighs by are held fixed too
  assert np.abs(g_l1['W_dec']).max() == 0 and np.abs(g_l1['b_gate']).max() > 0
  # The Heaviside gate passes the reconstruction no gradient: those two terms are its teachers.
  g_rec = grad(sae_terms.normalized_mse)
  assert np.abs(g_rec['b_gate']).max() == 0 and np.abs(g_rec['b_mag']).max() > 0


WIDTHS = (4, 12, N)


@pytest.mark.quick
def test_matryoshka_sums_its_prefixes_errors_and_a_prefix_trains_only_its_latents():
  model = _model('batchtopk', matryoshka_widths=WIDTHS)
  params, x = _init(model), _x()
  stats = {'since_fired': jnp.array([0] * (N - 4) + [5] * 4, jnp.int32),
           'threshold': jnp.zeros((), jnp.float32)}  # latents 28-31 dead
  out = _outputs(model, params, x, train=True, stats=stats)
  p, z, f = _numpy(params), np.asarray(x, np.float64), np.asarray(out.aux['code'], np.float64)
  w = p['W_dec'] / np.linalg.norm(p['W_dec'], axis=1, keepdims=True)
  total = ((z - z.mean(0)) ** 2).sum()
  want = sum(((f[:, :m] @ w[:m] + p['b_dec'] - z) ** 2).sum() / total for m in WIDTHS)
  assert float(sae_terms.matryoshka_mse(out)) == pytest.approx(want, rel=1e-5)
  np.testing.assert_allclose(out.recon, f @ w + p['b_dec'], atol=1e-5)
  assert float(sae_terms.auxk(out, k=2)) > 0  # AuxK revives its dead latents as any dictionary's

  def first_prefix(q):  # the normalized error of the first 4 latents' reconstruction alone
    o = _outputs(model, q, x, train=True, stats=stats)
    return sae_terms.normalized_mse(o.replace(recon=o.aux['matryoshka'][0]))

  g = jax.grad(first_prefix)(params)
  m = WIDTHS[0]
  assert np.abs(g['W_enc'][:, :m]).max() > 0 and np.abs(g['W_dec'][:m]).max() > 0
  for name, beyond in (('W_enc', g['W_enc'][:, m:]), ('W_dec', g['W_dec'][m:]),
                       ('b_enc', g['b_enc'][m:])):
    assert np.abs(beyond).max() == 0, name


@pytest.mark.quick
def test_the_new_terms_on_other_dictionaries_are_one_line():
  model = _model('topk')
  out = _outputs(model, _init(model), _x())
  for term in (sae_terms.gated_l1, sae_terms.gated_aux):
    assert ("needs a gated dictionary (model sae with activation 'gated'); this model's aux has "
            'code, dictionary') in one_line_error(term, out)
  assert 'matryoshka_mse needs a Matryoshka dictionary (model sae with matryoshka_widths)' in (
      one_line_error(sae_terms.matryoshka_mse, out))


@pytest.mark.quick
def test_batchtopk_takes_a_fractional_mean_k():
  model = _model('batchtopk', k=2.5)
  params, stats = _init(model), model.initial_stats()
  _, aux = model.apply({'params': params}, _x(rows=4), train=True, stats=stats)
  assert (np.asarray(aux['code']) > 0).sum() == 10  # 2.5 x 4 of the batch
  assert 'model.k = 2.5 times the 3 rows of a training batch is 7.5, not a whole number' in (
      one_line_error(model.apply, {'params': params}, _x(rows=3), train=True, stats=stats))
  _, fallback = model.apply({'params': params}, _x(rows=4))  # no threshold: top ceil(k) per row
  assert ((np.asarray(fallback['code']) > 0).sum(1) == 3).all()
  config = experiment('sae_toy', 'tiny,batchtopk')
  config.model.k = 2.5  # a float field: the experiment's k = 6 did not make it an int
  assert models.build(config.model, (D,)).k == 2.5
  config.model.k = 6.0
  assert type(models.build(config.model, (D,)).k) is int  # where shapes need a whole k


@pytest.mark.quick
@pytest.mark.parametrize('kind', ['gated', 'matryoshka'])
def test_gated_and_matryoshka_exports_give_the_latents_by_hand(kind):
  if kind == 'gated':
    (model, params), stats = _gated(), None
  else:
    model = _model('batchtopk', matryoshka_widths=WIDTHS)
    params, stats = _init(model), {'since_fired': jnp.zeros(N, jnp.int32),
                                   'threshold': jnp.float32(0.1)}
  x = _x()
  recon, aux = model.apply({'params': params}, x, stats=stats)
  out = model.export(params, stats)
  a, z = out.arrays, np.asarray(x, np.float64)
  pre = (z - a['b_dec']) @ a['W_enc']
  if kind == 'gated':
    assert set(a) == {'W_enc', 'b_gate', 'r_mag', 'b_mag', 'W_dec', 'b_dec'}
    f = (pre + a['b_gate'] > 0) * np.maximum(pre * np.exp(a['r_mag']) + a['b_mag'], 0)
    assert 'b_gate' in out.steps[1].line and out.steps[1].layers == ('1', 'code')
  else:
    pre = pre + a['b_enc']
    f = np.where(pre > a['batchtopk_threshold'], np.maximum(pre, 0), 0)
    np.testing.assert_array_equal(out.extras['matryoshka_widths'], WIDTHS)
    for m, level in zip(WIDTHS, aux['matryoshka']):
      np.testing.assert_allclose(f[:, :m] @ a['W_dec'][:m] + a['b_dec'], level, atol=1e-5)
  assert 0 < (f > 0).sum() < f.size
  np.testing.assert_allclose(f, aux['code'], atol=1e-5)
  np.testing.assert_allclose(f @ a['W_dec'] + a['b_dec'], recon, atol=1e-5)


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
config.train.update(mesh=(('data', 2), ('model', 4)), sharding=(('.*', 'model'),), num_steps=20,
                    checkpoint_every=20)
config.evals = {}
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
  config.train.update(num_steps=20, checkpoint_every=20)
  config.evals = {}
  one = train.train_and_evaluate(config, tmp_path / 'one')
  assert one['devices'] == 1
  a, b = (checkpoint.Checkpoints(tmp_path / d).restore_raw(20)[1]['state']
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
