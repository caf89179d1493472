"""VAE: KL against the closed form, the posterior-mean encoding, log importance weights against exact
values, and the IWAE bound against the ELBO."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import data, evaluators, losses, models, preprocessing
from aelab.losses import terms as term_fns
from aelab.config import defaults
from aelab.errors import AelabError
from aelab.evaluators import iwae
from aelab.losses import Outputs
from aelab.trainer import sharding
from aelab.trainer.forward import Forward
from aelab.trainer.state import TrainState

KEY = jax.random.PRNGKey(0)
NONE = preprocessing.Preprocessor('none')


def _vae(shape=(12,), batch=4, **fields):
  cfg = defaults.model('vae', **{'hidden': (16,), 'latent': 3, **fields})
  model = models.build(cfg, shape)
  x = (jax.random.uniform(KEY, (batch, *shape)) > 0.5).astype(jnp.float32)
  params = model.init({'params': jax.random.PRNGKey(1), 'noise': jax.random.PRNGKey(2)}, x)['params']
  return model, params, x


def test_vae_kl_matches_the_closed_form_and_monte_carlo():
  rng = np.random.default_rng(0)
  mean, logvar = rng.normal(size=(5, 4)), rng.normal(size=(5, 4)) * 0.5
  out = Outputs(x=np.zeros((5, 1)), recon=np.zeros((5, 1)),
                aux={'mean': mean, 'logvar': logvar}, params={})
  var = np.exp(logvar)
  # KL(N(m, s^2) || N(0, 1)) = log(1/s) + (s^2 + m^2)/2 - 1/2, per dimension.
  closed = np.sum(-0.5 * logvar + 0.5 * (var + mean ** 2) - 0.5, axis=1).mean()
  np.testing.assert_allclose(term_fns.vae_kl(out), closed, rtol=1e-6)
  # The closed form is E_q[log q(z) - log p(z)]: check it by sampling.
  z = mean + np.sqrt(var) * rng.normal(size=(200000, 5, 4))
  log_q = -0.5 * ((z - mean) ** 2 / var + logvar + np.log(2 * np.pi))
  log_p = -0.5 * (z ** 2 + np.log(2 * np.pi))
  np.testing.assert_allclose((log_q - log_p).sum(-1).mean(), closed, rtol=0.01)
  # Zero exactly at the prior.
  prior = out.replace(aux={'mean': np.zeros((2, 3)), 'logvar': np.zeros((2, 3))})
  assert float(term_fns.vae_kl(prior)) == 0.0


def test_call_samples_and_encode_returns_the_posterior_mean():
  model, params, x = _vae()
  recon, aux = model.apply({'params': params}, x, rngs={'noise': KEY})
  assert set(aux) == {'encoder', 'code', 'mean', 'logvar', 'z', 'decoder', 'logits'}
  np.testing.assert_allclose(recon, jax.nn.sigmoid(aux['logits']), rtol=1e-6)
  np.testing.assert_array_equal(aux['code'], aux['mean'])
  mean = model.apply({'params': params}, x, method=model.encode)  # no rng needed: deterministic
  np.testing.assert_allclose(mean, aux['mean'], rtol=1e-6)
  np.testing.assert_allclose(model.apply({'params': params}, x, method=model.encode), mean)
  eps = (aux['z'] - aux['mean']) / jnp.exp(0.5 * aux['logvar'])
  assert 0.1 < float(jnp.std(eps)) < 3.0  # z is a real sample, not the mean
  samples = jax.jit(jax.vmap(lambda k: model.apply({'params': params}, x, True, method=model.encode,
                                                   rngs={'noise': k})))(jax.random.split(KEY, 4000))
  assert not np.allclose(samples[0], mean)
  np.testing.assert_allclose(samples.mean(0), mean, atol=0.05)
  np.testing.assert_allclose(samples.std(0), jnp.exp(0.5 * aux['logvar']), rtol=0.06)
  decoded = model.apply({'params': params}, aux['z'], method=model.decode)
  np.testing.assert_allclose(decoded, recon, rtol=1e-5)


def _constant_decoder(params):
  """Zero the decoder's output kernel: p(x | z) no longer depends on z, so log p(x) is exact.

  The posterior is set to N(0.3, 1.5 I) for every x: wider than the prior, so the importance
  weights p(z) / q(z) are bounded and their log-mean-exp converges fast.
  """
  params = jax.tree.map(lambda a: a, params)
  zero_kernel = lambda layer, bias: {'kernel': jnp.zeros_like(params[layer]['kernel']),  # noqa
                                     'bias': jnp.full_like(params[layer]['bias'], bias)}
  params['decoder_out'] = {**params['decoder_out'],
                           'kernel': jnp.zeros_like(params['decoder_out']['kernel'])}
  params['mean'] = zero_kernel('mean', 0.3)
  params['logvar'] = zero_kernel('logvar', np.log(1.5))
  return params


@pytest.mark.parametrize('likelihood', ['bernoulli', 'gaussian'])
def test_log_weights_give_the_exact_marginal_when_the_decoder_ignores_z(likelihood):
  model, params, x = _vae(likelihood=likelihood, batch=3)
  params = _constant_decoder(params)
  if likelihood == 'gaussian':
    params['log_sigma'] = jnp.asarray(-0.4)
  k = 20000
  lw = model.apply({'params': params}, x, k, method=model.log_weights, rngs={'noise': KEY})
  assert lw.shape == (3, k)
  bias = np.asarray(params['decoder_out']['bias'], np.float64)
  xn = np.asarray(x, np.float64).reshape(3, -1)
  if likelihood == 'bernoulli':
    log_px = np.sum(xn * bias - np.logaddexp(0, bias), axis=1)
  else:
    s = np.exp(-0.4)
    log_px = np.sum(-0.5 * ((xn - bias) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi), axis=1)
  _, aux = model.apply({'params': params}, x, rngs={'noise': KEY})
  kl = np.asarray(0.5 * jnp.sum(jnp.exp(aux['logvar']) + aux['mean'] ** 2 - 1 - aux['logvar'], -1))
  # E_q[log w] = log p(x) - KL(q || p);  log mean w -> log p(x) (p(z)/q(z) averages to 1).
  np.testing.assert_allclose(np.mean(lw, axis=1), log_px - kl, atol=0.02)
  bound = jax.nn.logsumexp(lw, axis=1) - np.log(k)
  np.testing.assert_allclose(bound, log_px, atol=0.01)
  assert np.all(kl > 0.1)  # so the two checks differ


def _iwae_context(model, x):
  """An evaluator context around a VAE whose test split is x (binary, as after binarization)."""
  x = np.asarray(x, np.float32)
  split = data.Split(x, None)
  ds = data.Dataset(name='toy', train=split, val=split, test=split,
                    feature_shape=tuple(x.shape[1:]), value_range=(0.0, 1.0), feature_names=None,
                    num_classes=None, source={})
  return evaluators.Context(config=None, dataset=ds, forward=Forward(model, loss_fn=None),
                            mesh=sharding.make_mesh(), unit_interval=True)


def _state(params):
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=(), rng=KEY)


def test_iwae_is_tighter_than_the_elbo_and_equal_at_k_1():
  model, params, x = _vae(shape=(4, 5, 1), batch=10, hidden=(8,), latent=2)
  ctx = _iwae_context(model, x)
  fields = dict(split='test', samples=64, batch_size=5, memory_mb=1, examples=0)
  out = iwae.Evaluator(ctx, **fields)(_state(params), NONE)
  assert out['iwae_k'] == 64 and out['iwae_examples'] == 10
  assert out['iwae_nll'] < out['iwae_neg_elbo'] - 0.05   # tighter, per example and on average
  one = iwae.Evaluator(ctx, **{**fields, 'samples': 1})(_state(params), NONE)
  np.testing.assert_allclose(one['iwae_nll'], one['iwae_neg_elbo'], rtol=1e-6)
  # The k-sample ELBO estimate agrees with the training loss (1-sample ELBO) on average.
  step = iwae.make_step(ctx.forward, 64, 64)
  bound, elbo = step(params, NONE, x, KEY)
  assert np.all(np.asarray(bound) >= np.asarray(elbo) - 1e-5)


def test_iwae_chunks_cover_every_sample():
  model, params, x = _vae(batch=2)
  forward = Forward(model, loss_fn=None)
  # k = 10 in chunks of 4: two scanned chunks and a remainder of 2; vs one chunk of 10.
  b1, e1 = iwae.make_step(forward, 10, 4)(params, NONE, x, KEY)
  b2, e2 = iwae.make_step(forward, 10, 10)(params, NONE, x, KEY)
  np.testing.assert_allclose(b1, b2, atol=1.0)   # different draws, same quantity
  assert iwae.chunk_size(forward, params, NONE, np.asarray(x), 5000, 100, 1) < 5000
  assert iwae.chunk_size(forward, params, NONE, np.asarray(x), 50, 100, 4096) == 50


def test_iwae_config_checks():
  model, _, x = _vae()
  ctx = _iwae_context(model, x)
  built = evaluators.build({'iwae': defaults.evaluator('iwae', samples=10)}, ctx)
  assert [(ev.name, ev.split, ev.every) for ev in built] == [('iwae', 'test', 0)]
  assert built[0].run.k == 10
  dense = models.build(defaults.model('dense', hidden=(4,)), (12,))
  dense_ctx = _iwae_context(dense, x)
  with pytest.raises(AelabError, match='needs a model with a likelihood'):
    evaluators.build({'iwae': defaults.evaluator('iwae', samples=10)}, dense_ctx)
  assert evaluators.build({'iwae': defaults.evaluator('iwae', every=-1)}, dense_ctx) == []
  with pytest.raises(AelabError, match="samples = 2.5; it must be an integer >= 1"):
    evaluators.build({'iwae': dict(type='iwae', samples=2.5)}, ctx)
  with pytest.raises(AelabError, match='unknown field k in evals.iwae'):
    evaluators.build({'iwae': dict(type='iwae', k=5)}, ctx)
  with pytest.raises(AelabError, match='evals.iwae.every = -2'):
    evaluators.build({'iwae': dict(type='iwae', every=-2)}, ctx)


def test_bad_vae_config_is_a_clear_error():
  for field, value, message in (('body', 'mlp', "unknown model.body 'mlp'"),
                                ('likelihood', 'poisson', "unknown model.likelihood 'poisson'"),
                                ('latent', 0, 'model.latent = 0'),
                                ('hidden', (), 'model.hidden = ()')):
    cfg = defaults.model('vae')
    cfg[field] = value
    with pytest.raises(AelabError) as err:
      models.build(cfg, (28, 28, 1))
    assert message in str(err.value)
  with pytest.raises(AelabError, match='needs image data'):
    models.build(defaults.model('vae', body='conv'), (30,))
