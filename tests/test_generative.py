"""The generative autoencoders' objectives against numpy references: the IWAE bound and its DReG
gradient, the VampPrior's mixture prior, the hierarchical VAE's densities, the WAE's MMD and the
RAE's regularisers; and one-line errors for impossible combinations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from aelab import losses, models, preprocessing
from aelab.config import defaults
from aelab.errors import AelabError
from aelab.losses import generative
from aelab.models import likelihoods
from aelab.trainer.forward import Forward

pytestmark = pytest.mark.quick
NONE = preprocessing.Preprocessor('none')
SHAPE = (6,)
X = (np.random.default_rng(0).uniform(size=(5, 6)) > 0.5).astype(np.float32)


def _model(name, **fields):
  model = models.build(defaults.model(name, **fields), SHAPE)
  keys = {'params': jax.random.PRNGKey(0), 'noise': jax.random.PRNGKey(1)}
  return model, jax.device_get(model.init(keys, X)['params'])


def _dense(p, h):
  return h @ np.asarray(p['kernel'], np.float64) + np.asarray(p['bias'], np.float64)


def _log_normal(z, mean, logvar):
  return -0.5 * np.sum((z - mean) ** 2 / np.exp(logvar) + logvar + math.log(2 * math.pi), -1)


def _log_bernoulli(logits, x):
  return np.sum(x * logits - np.logaddexp(0, logits), -1)


def _zs(model, params, k=4):
  return model.apply({'params': params}, X, k, method=model.posterior_sample,
                     rngs={'noise': jax.random.PRNGKey(2)})


def test_the_vae_log_weights_in_three_parts_match_numpy():
  model, p = _model('vae', hidden=(5,), latent=3)
  zs = _zs(model, p)
  h = np.tanh(_dense(p['encoder_1'], X))
  mean, logvar = _dense(p['mean'], h), _dense(p['logvar'], h)
  z = np.asarray(zs[0], np.float64)
  logits = _dense(p['decoder_out'], np.tanh(_dense(p['decoder_1'], z)))
  want_q = _log_normal(z, mean, logvar)
  want_joint = _log_bernoulli(logits, X) + _log_normal(z, 0.0, 0.0)
  got_q = model.apply({'params': p}, X, zs, method=model.log_posterior)
  got_joint = model.apply({'params': p}, X, zs, method=model.log_joint)
  np.testing.assert_allclose(got_q, want_q, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(got_joint, want_joint, rtol=1e-5, atol=1e-4)


def test_the_vampprior_is_the_mixture_of_the_posteriors_at_the_pseudo_inputs():
  model, p = _model('vampprior', hidden=(5,), latent=3, pseudo_inputs=4)
  zs = _zs(model, p)
  u = np.clip(np.asarray(p['pseudo_inputs'], np.float64), 0, 1)
  hu = np.tanh(_dense(p['encoder_1'], u))
  mu, lvu = _dense(p['mean'], hu), _dense(p['logvar'], hu)          # [K, L]
  z = np.asarray(zs[0], np.float64)[..., None, :]                    # [k, B, 1, L]
  want = logsumexp(_log_normal(z, mu, lvu), axis=-1) - math.log(4)
  logits = _dense(p['decoder_out'], np.tanh(_dense(p['decoder_1'], z[..., 0, :])))
  got = model.apply({'params': p}, X, zs, method=model.log_joint)
  np.testing.assert_allclose(got, want + _log_bernoulli(logits, X), rtol=1e-5, atol=1e-4)
  # its samples come from the components: each lies where some component has mass
  codes = model.apply({'params': p}, 2000, method=model.prior_codes,
                      rngs={'noise': jax.random.PRNGKey(3)})
  np.testing.assert_allclose(np.mean(codes, 0), np.mean(mu, 0), atol=0.15)


def test_the_hierarchical_vae_densities_match_numpy():
  model, p = _model('hierarchical_vae', hidden=((5,), (4,)), latents=(3, 2))
  zs = _zs(model, p)
  z1, z2 = (np.asarray(z, np.float64) for z in zs)
  e1, e2 = p['encoder_1'], p['encoder_2']
  h = np.tanh(_dense(e1['dense_1'], X))
  q1 = _log_normal(z1, _dense(e1['mean'], h), _dense(e1['logvar'], h))
  h = np.tanh(_dense(e2['dense_1'], z1))
  q2 = _log_normal(z2, _dense(e2['mean'], h), _dense(e2['logvar'], h))
  d1, d2 = p['decoder_1'], p['decoder_2']
  h = np.tanh(_dense(d2['dense_1'], z2))
  p1 = _log_normal(z1, _dense(d2['mean'], h), _dense(d2['logvar'], h))
  logits = _dense(d1['out'], np.tanh(_dense(d1['dense_1'], z1)))
  want_joint = _log_bernoulli(logits, X) + p1 + _log_normal(z2, 0.0, 0.0)
  np.testing.assert_allclose(model.apply({'params': p}, X, zs, method=model.log_posterior),
                             q1 + q2, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(model.apply({'params': p}, X, zs, method=model.log_joint),
                             want_joint, rtol=1e-5, atol=1e-4)


def test_the_hierarchical_vae_samples_its_code_z1_ancestrally():
  """prior_codes draws z_1 through p(z_1 | z_2) with z_2 ~ N(0, I): its mean and variance are
  numpy's E[mu(z_2)] and E[sigma^2(z_2)] + Var[mu(z_2)], not the variance of the means alone."""
  model, p = _model('hierarchical_vae', hidden=((5,), (4,)), latents=(3, 2))
  n = 40000
  z1 = np.asarray(model.apply({'params': p}, n, method=model.prior_codes,
                              rngs={'noise': jax.random.PRNGKey(7)}), np.float64)
  d2 = p['decoder_2']
  h = np.tanh(_dense(d2['dense_1'], np.random.default_rng(0).standard_normal((400000, 2))))
  mean, var = _dense(d2['mean'], h), np.exp(_dense(d2['logvar'], h))
  want_var = var.mean(0) + mean.var(0)
  assert z1.shape == (n, 3)
  np.testing.assert_allclose(z1.mean(0), mean.mean(0), atol=4 * np.sqrt(want_var / n).max())
  np.testing.assert_allclose(z1.var(0), want_var, rtol=0.05)
  assert np.all(want_var > 1.5 * mean.var(0))   # the test tells ancestral draws from means
  code = model.apply({'params': p}, X, method=model.encode)   # the code is q(z_1 | x)'s mean
  e1 = p['encoder_1']
  np.testing.assert_allclose(code, _dense(e1['mean'], np.tanh(_dense(e1['dense_1'], X))),
                             rtol=1e-5, atol=1e-5)


def _forward(name, loss, **fields):
  model, params = _model(name, **fields)
  return Forward(model, losses.compose(defaults.loss(**loss))), params


def _terms(fwd, params, rng):
  return fwd(params, NONE, {'x': X}, rng, True)[1][0]


@pytest.mark.parametrize('estimator', ['iwae', 'dreg'])
def test_the_iwae_term_is_the_log_mean_of_the_model_weights(estimator):
  fwd, p = _forward('vae', dict(iwae=dict(weight=1.0, samples=7, estimator=estimator)),
                    hidden=(5,), latent=3)
  rng = jax.random.PRNGKey(4)
  got = _terms(fwd, p, rng)['iwae']
  from aelab.trainer import forward
  key = jax.random.fold_in(rng, forward.TERMS_STREAM)
  m = fwd.model
  if estimator == 'iwae':
    lw = np.asarray(m.apply({'params': p}, X, 7, method=m.log_weights, rngs={'noise': key}))
  else:
    zs = m.apply({'params': p}, X, 7, method=m.posterior_sample, rngs={'noise': key})
    lw = np.asarray(m.apply({'params': p}, X, zs, method=m.log_joint)
                    - m.apply({'params': p}, X, zs, method=m.log_posterior)).T
  np.testing.assert_allclose(got, -np.mean(logsumexp(lw, axis=1) - math.log(7)), rtol=1e-5)


def test_the_iwae_objective_at_k_1_is_the_elbo():
  """Averaged over draws, the k = 1 bound equals reconstruction (bce sum) + the closed-form KL."""
  fwd, p = _forward('vae', dict(iwae=dict(weight=1.0, samples=1),
                                reconstruction=dict(weight=0.0, kind='bce', reduction='sum')),
                    hidden=(5,), latent=3)
  elbo, _ = _forward('vae', dict(reconstruction=dict(weight=1.0, kind='bce', reduction='sum'),
                                 vae_kl=dict(weight=1.0)), hidden=(5,), latent=3)
  keys = jax.random.split(jax.random.PRNGKey(5), 4000)
  # jit: the 4000 draws as one program, not op by op (the same values, a few times faster)
  iw = jax.jit(jax.vmap(lambda k: fwd(p, NONE, {'x': X}, k, True)[0]))(keys)
  el = jax.jit(jax.vmap(lambda k: elbo(p, NONE, {'x': X}, k, True)[0]))(keys)
  se = math.sqrt((np.var(iw) + np.var(el)) / len(keys))
  assert abs(np.mean(iw) - np.mean(el)) < 4 * se and np.var(iw) > np.var(el)


def _gradients(estimator, k, draws):
  fwd, p = _forward('vae', dict(iwae=dict(weight=1.0, samples=k, estimator=estimator)),
                    hidden=(5,), latent=3)
  grad = jax.jit(jax.vmap(lambda key: jax.grad(lambda q: fwd(q, NONE, {'x': X}, key, True)[0])(
      p)))(jax.random.split(jax.random.PRNGKey(6), draws))
  return jax.tree.map(np.asarray, grad)


def test_dreg_gradients_are_unbiased_and_quieter_for_the_encoder():
  k, draws = 10, 3000
  plain, dreg = _gradients('iwae', k, draws), _gradients('dreg', k, draws)
  for name in ('decoder_1', 'decoder_out', 'encoder_1', 'mean', 'logvar'):
    a, b = plain[name]['kernel'], dreg[name]['kernel']
    se = np.sqrt((a.var(0) + b.var(0)) / draws) + 1e-9
    z = np.abs(a.mean(0) - b.mean(0)) / se
    assert z.max() < 5.0, (name, z.max())           # the same expectation
  for name in ('decoder_1', 'decoder_out'):           # the decoder's gradient is the same
    np.testing.assert_allclose(plain[name]['kernel'], dreg[name]['kernel'], rtol=1e-4, atol=1e-4)
  enc = [(plain[n]['kernel'].var(0).sum(), dreg[n]['kernel'].var(0).sum())
         for n in ('mean', 'logvar')]
  assert all(d < 0.8 * a for a, d in enc), enc          # and the encoder's varies less


def test_kl_sample_is_log_q_minus_log_prior_at_the_draw():
  fwd, p = _forward('vampprior', dict(reconstruction=dict(weight=1.0, kind='bce',
                                                          reduction='sum'),
                                      kl_sample=dict(weight=1.0)), hidden=(5,), latent=3,
                    pseudo_inputs=4)
  total, (terms, _, _, aux) = fwd(p, NONE, {'x': X}, jax.random.PRNGKey(7), True)
  want = np.mean(np.asarray(aux['log_posterior']) - np.asarray(aux['log_prior']))
  np.testing.assert_allclose(terms['kl_sample'], want, rtol=1e-6)
  logits = np.asarray(aux['logits'], np.float64)
  np.testing.assert_allclose(terms['reconstruction'], -np.mean(_log_bernoulli(logits, X)),
                             rtol=1e-5)
  np.testing.assert_allclose(total, terms['reconstruction'] + terms['kl_sample'], rtol=1e-6)


def _mmd_numpy(a, b, scale):
  n, d = a.shape
  def kernel(x, y):
    dist = np.sum((x[:, None] - y[None]) ** 2, -1)
    return sum(2 * d * scale ** 2 * s / (2 * d * scale ** 2 * s + dist)
               for s in generative.MMD_SCALES)
  kaa, kbb, kab = kernel(a, a), kernel(b, b), kernel(a, b)
  off = 1 - np.eye(n)
  return (np.sum(kaa * off) + np.sum(kbb * off)) / (n * (n - 1)) - 2 * kab.mean()


def test_the_mmd_estimate_matches_numpy_and_separates_distributions():
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(64, 4)), rng.normal(size=(64, 4))
  np.testing.assert_allclose(generative.mmd_estimate(jnp.asarray(a), jnp.asarray(b), 'imq', 1.0),
                             _mmd_numpy(a, b, 1.0), rtol=1e-4, atol=1e-6)
  near = float(generative.mmd_estimate(jnp.asarray(a), jnp.asarray(b), 'imq', 1.0))
  far = float(generative.mmd_estimate(jnp.asarray(a + 2.0), jnp.asarray(b), 'imq', 1.0))
  assert abs(near) < 0.05 and far > 0.3


def test_the_rae_regularisers_match_numpy():
  fwd, p = _forward('dense', dict(reconstruction=dict(weight=1.0),
                                  code_l2=dict(weight=1.0), decoder_weight_decay=dict(weight=1.0),
                                  decoder_gradient=dict(weight=1.0), mmd=dict(weight=1.0)),
                    hidden=(5, 2), activation='tanh,linear', output_activation='sigmoid')
  terms = _terms(fwd, p, jax.random.PRNGKey(8))
  h = np.tanh(_dense(p['encoder_1'], X))
  code = _dense(p['encoder_2'], h)
  np.testing.assert_allclose(terms['code_l2'], np.mean(0.5 * np.sum(code ** 2, 1)), rtol=1e-5)
  decay = 0.5 * sum(np.sum(np.asarray(p[n]['kernel'], np.float64) ** 2)
                    for n in ('decoder_1', 'decoder_2'))
  np.testing.assert_allclose(terms['decoder_weight_decay'], decay, rtol=1e-5)

  def decode(z):  # sum of the decoder's outputs, one example
    hd = np.tanh(_dense(p['decoder_1'], z))
    return np.sum(1 / (1 + np.exp(-_dense(p['decoder_2'], hd))))
  eps, grads = 1e-5, []
  for c in code:
    grads.append([(decode(c + eps * e) - decode(c - eps * e)) / (2 * eps) for e in np.eye(2)])
  np.testing.assert_allclose(terms['decoder_gradient'], np.mean(np.sum(np.square(grads), 1)),
                             rtol=1e-3)


@pytest.mark.parametrize('name, fields, loss, message', [
    ('dense', dict(hidden=(4, 2)), dict(iwae=dict(weight=1.0)), 'needs a model with a likelihood'),
    ('vampprior', dict(hidden=(4,), latent=2, pseudo_inputs=3), dict(vae_kl=dict(weight=1.0)),
     'use kl_sample'),
    ('vae', dict(hidden=(4,), latent=2), dict(kl_sample=dict(weight=1.0)), 'use vae_kl'),
])
def test_impossible_combinations_are_one_line_errors(name, fields, loss, message):
  fwd, p = _forward(name, loss, **fields)
  with pytest.raises(AelabError, match=message) as err:
    _terms(fwd, p, jax.random.PRNGKey(0))
  assert '\n' not in str(err.value)


@pytest.mark.parametrize('loss, message', [
    (dict(iwae=dict(weight=1.0, samples=0)), 'iwae samples'),
    (dict(iwae=dict(weight=1.0, estimator='reinforce')), 'iwae estimator'),
    (dict(mmd=dict(weight=1.0, kernel='linear')), 'mmd kernel'),
    (dict(mmd=dict(weight=1.0, scale=-1.0)), 'mmd scale'),
])
def test_bad_options_are_one_line_errors(loss, message):
  with pytest.raises(AelabError, match=message):
    losses.compose(defaults.loss(**loss))


def test_the_discretized_logistic_puts_all_its_mass_on_the_256_levels():
  levels = jnp.arange(256.0) / 255.0
  for mean, log_scale in [(0.3, -2.0), (0.0, -5.0), (1.2, 0.5), (0.5, -9.0)]:
    logp = likelihoods.discretized_logistic(jnp.float32(mean), jnp.float32(log_scale), levels)
    assert np.all(np.isfinite(logp))
    np.testing.assert_allclose(np.sum(np.exp(np.asarray(logp, np.float64))), 1.0, rtol=2e-4)
  # an interior bin is the logistic CDF's difference over it
  cdf = lambda v: 1 / (1 + np.exp(-(v - 0.3) / np.exp(-2.0)))  # noqa: E731
  x = 100 / 255
  want = np.log(cdf(x + 0.5 / 255) - cdf(x - 0.5 / 255))
  got = likelihoods.discretized_logistic(jnp.float32(0.3), jnp.float32(-2.0), jnp.float32(x))
  np.testing.assert_allclose(got, want, rtol=1e-4)


def test_a_logistic_vae_scores_its_weights_with_the_logistic_likelihood():
  model, p = _model('vae', hidden=(5,), latent=3, likelihood='logistic')
  x = np.round(np.random.default_rng(3).uniform(size=(5, 6)) * 255) / 255
  zs = model.apply({'params': p}, x, 4, method=model.posterior_sample,
                   rngs={'noise': jax.random.PRNGKey(2)})
  z = np.asarray(zs[0], np.float64)
  mean = _dense(p['decoder_out'], np.tanh(_dense(p['decoder_1'], z)))
  want = np.sum(np.asarray(likelihoods.discretized_logistic(
      jnp.asarray(mean, jnp.float32), p['log_scale'], jnp.asarray(x, jnp.float32))), -1)
  got = model.apply({'params': p}, x, zs, method=model.log_joint)
  np.testing.assert_allclose(got, want + _log_normal(z, 0.0, 0.0), rtol=1e-5, atol=1e-3)
  fwd = Forward(model, losses.compose(defaults.loss(
      reconstruction=dict(weight=1.0, kind='logistic', reduction='sum'))))
  terms = fwd(p, NONE, {'x': x}, jax.random.PRNGKey(0), True)[1][0]
  assert np.isfinite(terms['reconstruction']) and terms['reconstruction'] > 0


@pytest.mark.parametrize('name, fields, path', [
    ('vae', dict(hidden=(4,), latent=2), ('decoder_out', 'bias')),
    ('vampprior', dict(hidden=(4,), latent=2, pseudo_inputs=3), ('decoder_out', 'bias')),
    ('hierarchical_vae', dict(hidden=((5,), (4,)), latents=(3, 2)), ('decoder_1', 'out', 'bias')),
])
def test_output_bias_data_starts_the_decoder_at_the_rows_mean_logits(name, fields, path):
  rows = np.array([[0.0, 1.0, 0.5, 0.25, 0.5, 0.9], [0.0, 1.0, 0.5, 0.75, 0.1, 0.9]], np.float32)
  model = models.build(defaults.model(name, output_bias='data', **fields), SHAPE)
  got = model.data_init(lambda: rows)
  for key in path:
    got = got[key]
  mean = np.clip(rows.astype(np.float64).mean(0), 0.001, 0.999)   # Burda et al.'s clipping of the empty pixels
  np.testing.assert_allclose(got, np.log(mean / (1 - mean)), rtol=1e-6)
  assert got[0] == pytest.approx(math.log(0.001 / 0.999)) and got[2] == 0.0
  gaussian = models.build(defaults.model(name, output_bias='data', likelihood='gaussian',
                                         **fields), SHAPE).data_init(lambda: rows)
  for key in path:
    gaussian = gaussian[key]
  np.testing.assert_allclose(gaussian, rows.mean(0))
  assert models.build(defaults.model(name, output_bias='zeros', **fields),
                      SHAPE).data_init(lambda: rows) == {}


def test_output_bias_data_needs_a_dense_decoder():
  with pytest.raises(AelabError, match="output_bias='data' needs body='dense'") as err:
    models.build(defaults.model('vae', body='conv', output_bias='data'), (28, 28, 1))
  assert '\n' not in str(err.value)
  with pytest.raises(AelabError, match="unknown model.output_bias 'mean'"):
    models.build(defaults.model('hierarchical_vae', output_bias='mean'), SHAPE)
