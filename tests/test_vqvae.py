"""VQ-VAE (aelab/models/vqvae.py, aelab/losses/vq_terms.py, aelab/evaluators/codebook.py): the
loss and its gradients against numpy, the moving-average codebook over two steps, the
straight-through gradient, code restarts, an exact resume, the fitted categorical prior, the
export by hand, the codebook evaluator and one-line errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import data, evaluators, losses, models, preprocessing
from aelab.config import defaults
from aelab.evaluators import codebook
from aelab.losses import Outputs
from aelab.trainer import checkpoint, sharding, train
from aelab.trainer.forward import Forward
from aelab.trainer.state import TrainState
from conftest import experiment, one_line_error

KEY = jax.random.PRNGKey(0)
NONE = preprocessing.Preprocessor('none')
B, F, P, D, K = 5, 6, 3, 2, 6   # batch, features, positions, code width, codes


def _model(**fields):
  cfg = defaults.model('vqvae', **{'body': 'dense', 'hidden': (8,), 'positions': P,
                                   'embedding_dim': D, 'codes': K, **fields})
  return models.build(cfg, (F,))


def _init(model, seed=0):
  rng = np.random.default_rng(seed)
  x = jnp.asarray((rng.uniform(size=(B, F)) > 0.5).astype(np.float32))
  return model.init(jax.random.PRNGKey(seed + 1), x)['params'], x


def _np(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _nearest(z, book):
  """Indices of the nearest rows of book [K, D] for vectors z [..., D], by full distances."""
  return np.argmin(np.sum(np.square(z[..., None, :] - book), axis=-1), axis=-1)


def _by_hand(p, x):
  """The dense body in numpy: (h, z_e [B, P, D], index, z_q, logits)."""
  relu = lambda a: np.maximum(a, 0)  # noqa: E731
  h = relu(x @ p['encoder_1']['kernel'] + p['encoder_1']['bias'])
  z_e = (h @ p['encoder_out']['kernel'] + p['encoder_out']['bias']).reshape(len(x), P, D)
  index = _nearest(z_e, p['codebook'])
  z_q = p['codebook'][index]
  d1 = relu(z_q.reshape(len(x), -1) @ p['decoder_1']['kernel'] + p['decoder_1']['bias'])
  return h, z_e, index, z_q, d1 @ p['decoder_out']['kernel'] + p['decoder_out']['bias']


def test_the_loss_and_its_gradients_match_numpy(x64):
  model = _model(ema=False, restart_steps=0)
  params, x = _init(model)
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
  loss_fn = losses.compose(defaults.loss(
      reconstruction=dict(weight=1.0, kind='bce', reduction='sum'),
      vq_commitment=dict(weight=0.25), vq_codebook=dict(weight=1.0)),
      model.layer_activations(), targets_in_unit_interval=True)

  def total(p, terms=False):
    recon, aux = model.apply({'params': p}, x)
    out = loss_fn(Outputs(x=x, recon=recon, aux=aux, params=p))
    return out if terms else out[0]

  value, terms = total(params, terms=True)
  p, xn = _np(params), np.asarray(x, np.float64)
  _, z_e, index, z_q, logits = _by_hand(p, xn)
  bce = np.sum(np.logaddexp(0, logits) - xn * logits, axis=1).mean()
  sq = np.sum(np.square(z_e - z_q), axis=(1, 2)).mean()
  np.testing.assert_allclose(terms['reconstruction'], bce, rtol=1e-12)
  np.testing.assert_allclose([terms['vq_commitment'], terms['vq_codebook']], [sq, sq], rtol=1e-12)
  np.testing.assert_allclose(value, bce + 1.25 * sq, rtol=1e-12)
  assert sq > 1e-3 and len(np.unique(index)) > 1
  # The codebook moves by the codebook term alone: d/dc_j = (2 / B) sum over vectors at j of
  # (c_j - z_e); the commitment and the reconstruction give it nothing (stop-gradients).
  grads = jax.grad(total)(params)
  want = np.zeros((K, D))
  np.add.at(want, index.reshape(-1), 2 * (z_q - z_e).reshape(-1, D) / B)
  np.testing.assert_allclose(grads['codebook'], want, rtol=1e-10, atol=1e-14)
  commitment = losses.compose({'vq_commitment': {'weight': 1.0}})
  commit = jax.grad(lambda q: commitment(Outputs(x=x, recon=x, aux=model.apply(
      {'params': q}, x)[1], params=q))[0])
  g = commit(params)
  assert float(jnp.max(jnp.abs(g['codebook']))) == 0.0
  assert float(jnp.max(jnp.abs(g['encoder_out']['kernel']))) > 0


def test_the_moving_average_codebook_matches_numpy_over_two_steps():
  decay, eps = 0.9, 0.05   # a large epsilon, so that the smoothing shows
  model = _model(decay=decay, epsilon=eps, restart_steps=0)
  params, x1 = _init(model)
  _, x2 = _init(model, seed=7)
  stats, book = model.initial_stats(), np.asarray(params['codebook'], np.float64)
  size, sums, since = np.zeros(K), np.zeros((K, D)), np.zeros(K, np.int32)
  for step, x in enumerate((x1, x2)):
    _, aux = model.apply({'params': params}, x, train=True, stats=stats, rngs={'noise': KEY})
    z = np.asarray(aux['z_e'], np.float64).reshape(-1, D)
    index = _nearest(z, book)
    np.testing.assert_array_equal(np.asarray(aux['indices']).reshape(-1), index)
    counts = np.bincount(index, minlength=K)
    batch_sums = np.zeros((K, D))
    np.add.at(batch_sums, index, z)
    size = decay * size + (1 - decay) * counts
    sums = decay * sums + (1 - decay) * batch_sums
    since = np.where(counts > 0, 0, since + 1)
    n = size.sum()
    smoothed = (size + eps) / (n + K * eps) * n
    new = np.where(size[:, None] > 0, sums / np.maximum(smoothed, 1e-30)[:, None], book)
    if step == 0:
      unused = counts == 0
      assert unused.any() and not unused.all()
      np.testing.assert_array_equal(new[unused], book[unused])  # kept as initialized
    # Without the smoothing the rows would differ by more than the tolerance.
    assert np.max(np.abs(sums / np.maximum(size, 1e-30)[:, None] - new)[size > 0]) > 1e-3
    np.testing.assert_allclose(aux['stats']['cluster_size'], size, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(aux['stats']['sums'], sums, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(aux['stats']['since_used'], since)
    np.testing.assert_allclose(aux['assign']['codebook'], new, rtol=1e-5, atol=1e-6)
    params = {**params, **aux['assign']}
    stats, book = aux['stats'], np.asarray(aux['assign']['codebook'], np.float64)


def test_the_reconstruction_gradient_passes_the_quantisation_straight_through(x64):
  model = _model(ema=True, restart_steps=0)
  params, x = _init(model)
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
  loss_fn = losses.compose({'reconstruction': {'weight': 1.0, 'kind': 'bce', 'reduction': 'sum'}})

  def loss(p):
    recon, aux = model.apply({'params': p}, x)
    return loss_fn(Outputs(x=x, recon=recon, aux=aux, params=p))[0]

  def loss_of_code(code):   # the same loss with the decoder fed the code directly
    recon, aux = model.apply({'params': params}, code, 'code', method=model.from_layer)
    return loss_fn(Outputs(x=x, recon=recon, aux=aux, params=params))[0]

  _, aux = model.apply({'params': params}, x)
  g_code = np.asarray(jax.grad(loss_of_code)(aux['code']))        # dL/dz_q [B, P*D]
  h = np.asarray(aux['encoder'][-1])
  grads = jax.grad(loss)(params)
  # z_e = h @ W + b, and dL/dz_e = dL/dz_q: dL/dW = h^T g, dL/db = sum_b g.
  np.testing.assert_allclose(grads['encoder_out']['kernel'], h.T @ g_code, rtol=1e-10, atol=1e-14)
  np.testing.assert_allclose(grads['encoder_out']['bias'], g_code.sum(0), rtol=1e-10, atol=1e-14)
  assert np.max(np.abs(g_code)) > 1e-3 and float(jnp.max(jnp.abs(grads['encoder_1']['kernel']))) > 0
  assert float(jnp.max(jnp.abs(grads['codebook']))) == 0.0   # the EMA codebook gets none


def test_an_unused_code_restarts_at_one_of_the_batchs_vectors():
  model = _model(restart_steps=1)
  params, x = _init(model)
  stats = model.initial_stats()
  picks = []
  for seed in range(6):
    _, aux = model.apply({'params': params}, x, train=True, stats=stats,
                         rngs={'noise': jax.random.PRNGKey(seed)})
    z = np.asarray(aux['z_e']).reshape(-1, D)
    unused = np.bincount(np.asarray(aux['indices']).reshape(-1), minlength=K) == 0
    assert unused.any() and not unused.all()
    new, s = np.asarray(aux['assign']['codebook']), aux['stats']
    for j in np.flatnonzero(unused):
      assert np.any(np.all(z == new[j], axis=1)), j   # exactly one of the batch's z_e
      np.testing.assert_array_equal(s['sums'][j], new[j])
    np.testing.assert_array_equal(np.asarray(s['cluster_size'])[unused], 1.0)
    np.testing.assert_array_equal(s['since_used'], 0)
    assert not np.allclose(new[unused], np.asarray(params['codebook'])[unused])
    picks.append(new[unused].tobytes())
  assert len(set(picks)) > 1   # the 'noise' rng chooses the vectors
  # With restart_steps = 3 the same codes wait: one idle step, their initial rows.
  model3 = _model(restart_steps=3)
  _, aux = model3.apply({'params': params}, x, train=True, stats=stats, rngs={'noise': KEY})
  np.testing.assert_array_equal(aux['stats']['since_used'], unused.astype(np.int32))
  np.testing.assert_array_equal(np.asarray(aux['assign']['codebook'])[unused],
                                np.asarray(params['codebook'])[unused])


def test_a_resumed_vqvae_run_ends_exactly_as_an_unbroken_one(tmp_path):
  config = experiment('vqvae_mnist', 'tiny')
  # scan_unroll=1: the config's 10 copies of the conv step (for speed on long runs) compile for
  # longer than these 40 steps take; a resume is the same either way.
  config.train.update(progress=False, checkpoint_every=20, num_steps=40, scan_unroll=1)
  config.model.restart_steps = 5   # restarts happen (randomness in the resumed part too)
  config.evals = dict(test=defaults.evaluator('codebook', split='test'))
  whole = train.train_and_evaluate(config, tmp_path / 'a')
  stopped = train.train_and_evaluate(config, tmp_path / 'b', should_stop=lambda s: s >= 20)
  assert stopped['interrupted'] == 'should_stop' and stopped['step'] == 20
  resumed = train.train_and_evaluate(config, tmp_path / 'b')
  a, b = (checkpoint.Checkpoints(tmp_path / w).restore_raw(40)[1]['state'] for w in 'ab')
  assert set(a) == {'step', 'params', 'opt_state', 'rng', 'stats'}
  assert set(a['stats']) == {'since_used', 'cluster_size', 'sums'}
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert resumed['test'] == whole['test']
  assert 1 < whole['test']['codebook_perplexity'] <= 32 and whole['test']['codebook_usage'] > 0.25


def test_the_fitted_prior_counts_indices_per_position():
  model = _model()
  params, _ = _init(model)
  book = np.asarray(params['codebook'])
  rng = np.random.default_rng(0)
  index = rng.integers(0, 3, size=(40, P))   # codes 3..5 never used
  codes = book[index].reshape(40, -1) + rng.normal(scale=1e-4, size=(40, P * D))
  prior = model.fit_prior(params, codes.astype(np.float32), seed=0)
  counts = np.stack([np.bincount(index[:, j], minlength=K) for j in range(P)])
  probs = (counts + 1) / (40 + K)
  want = np.log(probs[np.arange(P), index]).sum(-1)
  np.testing.assert_allclose(prior.log_density(codes), want, rtol=1e-12)
  samples = prior.sample(np.random.default_rng(1), 30000)
  assert samples.shape == (30000, P * D) and samples.dtype == np.float32
  drawn = _nearest(samples.reshape(-1, P, D).astype(np.float64), book.astype(np.float64))
  np.testing.assert_array_equal(samples.reshape(-1, P, D), book[drawn])   # codebook rows exactly
  freq = np.stack([np.bincount(drawn[:, j], minlength=K) for j in range(P)]) / 30000
  np.testing.assert_allclose(freq, probs, atol=0.015)
  np.testing.assert_array_equal(prior.sample(5, 10), prior.sample(np.random.default_rng(5), 10))


def test_the_dense_export_computes_the_model_by_hand():
  model = _model()
  params, x = _init(model)
  exp = model.export(jax.device_get(params), model.initial_stats())
  a = {k: np.asarray(v, np.float64) for k, v in exp.arrays.items()}
  assert set(a) == {'codebook', *(f'{n}/{w}' for n in ('encoder_1', 'encoder_out', 'decoder_1',
                                                       'decoder_out') for w in ('kernel', 'bias'))}
  assert [s.layers for s in exp.steps] == [('1',), (), (), ('code',), (), ()]
  assert exp.steps[4].line.startswith('d1 = relu(z_q @ decoder_1/kernel')
  nested = {n: {'kernel': a[f'{n}/kernel'], 'bias': a[f'{n}/bias']}
            for n in ('encoder_1', 'encoder_out', 'decoder_1', 'decoder_out')}
  _, _, _, z_q, logits = _by_hand({**nested, 'codebook': a['codebook']}, np.asarray(x, np.float64))
  recon, aux = model.apply({'params': params}, x)
  np.testing.assert_allclose(z_q.reshape(B, -1), aux['code'], rtol=1e-6)
  np.testing.assert_allclose(1 / (1 + np.exp(-logits)), recon, rtol=1e-5)
  conv = models.build(defaults.model('vqvae', channels=(4, 8), embedding_dim=3, codes=5),
                      (8, 8, 1))
  shapes = jax.eval_shape(conv.init, KEY, jnp.zeros((1, 8, 8, 1)))['params']
  exp = conv.export(jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes), {})
  arrays, coded = exp.arrays, [s.line for s in exp.steps if 'code' in s.layers]
  assert coded == ['z_q = flatten(codebook[index])   [4 x 3 = 12 values: the code]']
  assert conv.grid() == 4 and arrays['codebook'].shape == (5, 3)
  assert arrays['encoder_out/kernel'].shape == (1, 1, 8, 3)   # the 1x1 convolution to D


def _context(model, x):
  split = data.Split(np.asarray(x, np.float32), None)
  ds = data.Dataset(name='toy', train=split, val=split, test=split,
                    feature_shape=tuple(x.shape[1:]), value_range=(0.0, 1.0), feature_names=None,
                    num_classes=None, source={})
  return evaluators.Context(config=None, dataset=ds, forward=Forward(model, loss_fn=None),
                            mesh=sharding.make_mesh(), unit_interval=True)


def test_the_codebook_evaluator_counts_every_vector_of_the_split():
  model = _model()
  params, _ = _init(model)
  x = (np.random.default_rng(2).uniform(size=(23, F)) > 0.5).astype(np.float32)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=(), rng=KEY)
  out = codebook.Evaluator(_context(model, x), split='test', batch_size=4)(state, NONE)
  index = np.asarray(model.apply({'params': params}, x, method=model.code_indices)).reshape(-1)
  counts = np.bincount(index, minlength=K)
  p = counts[counts > 0] / counts.sum()
  assert out == pytest.approx({'codebook_perplexity': np.exp(-np.sum(p * np.log(p))),
                               'codebook_usage': np.mean(counts > 0),
                               'codebook_dead': np.sum(counts == 0)}, rel=1e-12)
  _, aux = model.apply({'params': params}, x)   # the batch's own figures: here the whole split
  np.testing.assert_allclose([aux['perplexity'], aux['usage']],
                             [out['codebook_perplexity'], out['codebook_usage']], rtol=1e-6)
  assert codebook.usage(np.array([5, 5, 0, 0])) == {
      'codebook_perplexity': pytest.approx(2.0), 'codebook_usage': 0.5, 'codebook_dead': 2}
  dense = models.build(defaults.model('dense', hidden=(4,)), (F,))
  assert 'needs a model with a codebook' in one_line_error(
      codebook.Evaluator, _context(dense, x), split='test', batch_size=4)


def test_bad_options_and_misplaced_terms_are_one_line_errors():
  for field, value, message in (
      ('body', 'mlp', "unknown model.body 'mlp'; valid choices: dense, conv"),
      ('likelihood', 'poisson', "unknown model.likelihood 'poisson'"),
      ('codes', 0, 'model.codes = 0; it must be an integer >= 1'),
      ('embedding_dim', 2.5, 'model.embedding_dim = 2.5'),
      ('decay', 1.0, 'model.decay = 1.0; it must be a finite number in [0, 1)'),
      ('epsilon', 0, 'model.epsilon = 0.0; it must be a finite number > 0'),
      ('restart_steps', -1, 'model.restart_steps = -1; it must be an integer >= 0'),
      ('ema', 'yes', "model.ema = 'yes'; it must be True"),
      ('hidden', (), 'model.hidden = ()')):
    cfg = defaults.model('vqvae', body='dense').to_dict() | {field: value}
    assert message in one_line_error(models.build, cfg, (28, 28, 1))
  assert 'with model.ema = False set restart_steps = 0' in one_line_error(
      models.build, defaults.model('vqvae', ema=False), (28, 28, 1))
  assert 'needs image data' in one_line_error(models.build, defaults.model('vqvae'), (30,))
  assert 'unknown field beta in model' in one_line_error(
      models.build, defaults.model('vqvae').to_dict() | {'beta': 0.25}, (28, 28, 1))
  dense = models.build(defaults.model('dense', hidden=(4,)), (F,))
  x = jnp.zeros((2, F))
  recon, aux = dense.apply({'params': dense.init(KEY, x)['params']}, x)
  for term in ('vq_commitment', 'vq_codebook'):
    loss_fn = losses.compose({term: {'weight': 1.0}})
    assert f"loss term {term} needs a VQ-VAE's aux['z_e']" in one_line_error(
        loss_fn, Outputs(x=x, recon=recon, aux=aux, params={}))
