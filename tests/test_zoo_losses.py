"""The zoo's loss terms against numpy: contractive (vs a finite-difference Jacobian), gaussian
reconstruction, KL warm-up, the code statistics; and their config checks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from aelab import losses, models, preprocessing
from aelab.losses import terms as term_fns
from aelab.config import defaults
from aelab.errors import AelabError
from aelab.trainer.forward import Forward, code_statistics
from aelab.losses import Outputs



def _fd_jacobian_norms(encode, x, eps=1e-6):
  """sum_ij (d code_i / d x_j)^2 per example, by central differences in float64 numpy."""
  x = np.asarray(x, np.float64)
  flat = x.reshape(len(x), -1)
  encode = jax.jit(encode)
  out = np.zeros(len(x))
  for j in range(flat.shape[1]):
    step = np.zeros_like(flat)
    step[:, j] = eps
    hi = np.asarray(encode(jnp.asarray((flat + step).reshape(x.shape))), np.float64)
    lo = np.asarray(encode(jnp.asarray((flat - step).reshape(x.shape))), np.float64)
    out += np.sum(((hi - lo) / (2 * eps)).reshape(len(x), -1) ** 2, axis=1)
  return out


def _model_outputs(cfg, shape, batch=6, seed=0):
  model = models.build(cfg, shape)
  x = jax.random.uniform(jax.random.PRNGKey(seed), (batch, *shape), jnp.float64)
  params = model.init(jax.random.PRNGKey(1), x)['params']
  params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
  recon, aux = model.apply({'params': params}, x)
  encode = functools.partial(model.apply, {'params': params}, method=model.encode)
  weights = lambda m: model.apply({'params': params}, method=m)  # noqa: E731
  return Outputs(x=x, recon=recon, aux=aux, params=params, encode=encode,
                 weights=weights), encode


@pytest.mark.parametrize('cfg,shape', [
    (defaults.model('dense', hidden=(7, 3), activation='tanh'), (10,)),        # jacrev (3 < 10)
    (defaults.model('dense', hidden=(12,), activation='sigmoid'), (2, 3, 1)),   # jacfwd (12 > 6)
    (defaults.model('conv', channels=(3,), latent=4, kernel_size=3, activation='tanh'), (5, 4, 2)),
])
def test_contractive_exact_matches_finite_difference_jacobian(x64, cfg, shape):
  out, encode = _model_outputs(cfg, shape)
  expected = _fd_jacobian_norms(encode, out.x).mean()
  np.testing.assert_allclose(jax.jit(lambda o: term_fns.contractive(o))(out), expected, rtol=1e-6)


def test_contractive_closed_form_for_a_sigmoid_layer(x64):
  out, encode = _model_outputs(defaults.model('dense', hidden=(9,), activation='sigmoid'), (8,))
  expected = _fd_jacobian_norms(encode, out.x).mean()
  # By hand: h = sigmoid(x W + b), ||J||^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ij^2.
  w = np.asarray(out.params['encoder_1']['kernel'])
  h = 1 / (1 + np.exp(-(np.asarray(out.x) @ w + np.asarray(out.params['encoder_1']['bias']))))
  by_hand = ((h * (1 - h)) ** 2 @ (w ** 2).sum(0)).mean()
  np.testing.assert_allclose(by_hand, expected, rtol=1e-6)
  np.testing.assert_allclose(term_fns.contractive(out, method='sigmoid_layer'), expected, rtol=1e-6)
  np.testing.assert_allclose(term_fns.contractive(out, method='exact'), expected, rtol=1e-6)


def test_contractive_uses_the_input_the_model_saw(x64):
  out, encode = _model_outputs(defaults.model('dense', hidden=(4,), activation='tanh'), (5,))
  noisy = out.x + 0.3
  expected = _fd_jacobian_norms(encode, noisy).mean()
  np.testing.assert_allclose(term_fns.contractive(out.replace(inputs=noisy)), expected, rtol=1e-6)
  assert abs(float(term_fns.contractive(out)) - expected) > 1e-3


def test_contractive_gradients_match_finite_differences(x64):
  cfg = defaults.model('dense', hidden=(5, 3), activation='tanh')
  model = models.build(cfg, (4,))
  x = jax.random.uniform(jax.random.PRNGKey(0), (3, 4), jnp.float64)
  params = jax.tree.map(lambda a: a.astype(jnp.float64),
                        model.init(jax.random.PRNGKey(1), x)['params'])

  def penalty(p, method='exact'):
    recon, aux = model.apply({'params': p}, x)
    encode = functools.partial(model.apply, {'params': p}, method=model.encode)
    return term_fns.contractive(Outputs(x=x, recon=recon, aux=aux, params=p, encode=encode), method)

  check_grads(jax.jit(penalty), (params,), order=1, modes=['rev'])
  sig = models.build(defaults.model('dense', hidden=(5,), activation='sigmoid'), (4,))
  sp = jax.tree.map(lambda a: a.astype(jnp.float64), sig.init(jax.random.PRNGKey(2), x)['params'])

  def closed(p):
    recon, aux = sig.apply({'params': p}, x)
    weights = lambda m: sig.apply({'params': p}, method=m)  # noqa: E731
    return term_fns.contractive(Outputs(x=x, recon=recon, aux=aux, params=p, weights=weights),
                             'sigmoid_layer')

  check_grads(jax.jit(closed), (sp,), order=1, modes=['rev'])


def test_contractive_config_errors(x64):
  out, _ = _model_outputs(defaults.model('dense', hidden=(4, 2), activation='sigmoid'), (5,))
  with pytest.raises(AelabError, match="method='exact'"):
    term_fns.contractive(out, method='sigmoid_layer')
  with pytest.raises(AelabError, match='Outputs.encode'):
    term_fns.contractive(out.replace(encode=None))
  with pytest.raises(AelabError, match="unknown contractive method 'fd'"):
    losses.compose({'contractive': {'weight': 1.0, 'method': 'fd'}})
  with pytest.raises(AelabError, match='one sigmoid encoder layer.*1: sigmoid, 2: sigmoid'):
    losses.compose({'contractive': {'weight': 1.0, 'method': 'sigmoid_layer'}},
                   layer_activations={'1': 'sigmoid', '2': 'sigmoid', 'code': 'sigmoid'})
  with pytest.raises(AelabError, match='1: tanh'):
    losses.compose({'contractive': {'weight': 1.0, 'method': 'sigmoid_layer'}},
                   layer_activations={'1': 'tanh', 'code': 'tanh'})
  losses.compose({'contractive': {'weight': 1.0, 'method': 'sigmoid_layer'}},
                 layer_activations={'1': 'sigmoid', 'code': 'sigmoid'})


def test_gaussian_reconstruction_is_the_gaussian_nll():
  rng = np.random.default_rng(0)
  x, mu = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
  for log_sigma in (None, -0.7):
    aux = {} if log_sigma is None else {'log_sigma': np.float64(log_sigma)}
    out = Outputs(x=x, recon=mu, aux=aux, params={})
    s = 1.0 if log_sigma is None else np.exp(log_sigma)
    nll = 0.5 * ((x - mu) / s) ** 2 + np.log(s) + 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(term_fns.reconstruction(out, kind='gaussian'), nll.mean(), rtol=1e-6)
    np.testing.assert_allclose(term_fns.reconstruction(out, kind='gaussian', reduction='sum'),
                               nll.sum(1).mean(), rtol=1e-6)
    # The same figure scipy gives for the density.
    from scipy.stats import norm
    np.testing.assert_allclose(nll, -norm.logpdf(x, mu, s), rtol=1e-10)


def test_warmup_ramps_the_weight_and_evaluation_uses_the_full_weight():
  rng = np.random.default_rng(1)
  mean, logvar = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)) * 0.3
  out = Outputs(x=np.zeros((4, 2)), recon=np.zeros((4, 2)),
                aux={'mean': mean, 'logvar': logvar}, params={})
  loss_fn = losses.compose(defaults.loss(vae_kl=dict(weight=2.0, warmup_steps=100)))
  assert loss_fn.needs_step
  kl = float(term_fns.vae_kl(out))
  for step, factor in ((0, 0.0), (25, 0.25), (100, 1.0), (5000, 1.0)):
    total, terms = loss_fn(out.replace(step=jnp.asarray(step)))
    np.testing.assert_allclose(total, 2.0 * factor * kl, rtol=1e-6)
    np.testing.assert_allclose(terms['vae_kl'], kl, rtol=1e-6)  # the logged term is unweighted
  np.testing.assert_allclose(loss_fn(out)[0], 2.0 * kl, rtol=1e-6)  # step None: evaluation
  assert not losses.compose(defaults.loss(vae_kl=dict(weight=1.0))).needs_step
  with pytest.raises(AelabError, match='warmup_steps.*integer >= 0'):
    losses.compose({'vae_kl': {'weight': 1.0, 'warmup_steps': -5}})


def test_forward_refuses_a_warmup_without_the_step():
  cfg = defaults.model('vae', hidden=(8,), latent=2)
  model = models.build(cfg, (6,))
  loss_fn = losses.compose(defaults.loss(
      reconstruction=dict(weight=1.0, kind='bce', reduction='sum'),
      vae_kl=dict(weight=1.0, warmup_steps=10)))
  forward = Forward(model, loss_fn)
  none = preprocessing.Preprocessor('none')
  x = jnp.full((3, 6), 0.5)
  params = model.init({'params': jax.random.PRNGKey(0), 'noise': jax.random.PRNGKey(1)}, x)['params']
  with pytest.raises(AelabError, match='step=state.step'):
    forward(params, none, {'x': x}, jax.random.PRNGKey(2), True)
  t0, (terms, _, _, _) = forward(params, none, {'x': x}, jax.random.PRNGKey(2), True,
                              step=jnp.asarray(0))
  np.testing.assert_allclose(t0, terms['reconstruction'], rtol=1e-6)  # KL weight 0 at step 0
  t_eval, (terms, _, _, _) = forward(params, none, {'x': x}, jax.random.PRNGKey(2), False)
  np.testing.assert_allclose(t_eval, terms['reconstruction'] + terms['vae_kl'], rtol=1e-6)


def test_code_statistics_match_numpy():
  code = np.array([[0.0, 0.005, -0.02, 3.0], [0.5, -0.009, 0.01, 0.0]], np.float32)
  stats = code_statistics(jnp.asarray(code))
  np.testing.assert_allclose(stats['code_mean'], code.mean(), rtol=1e-6)
  np.testing.assert_allclose(stats['code_near_zero'], (np.abs(code) < 1e-2).mean())  # 4 of 8
  assert float(stats['code_near_zero']) == 0.5


def test_new_terms_are_listed_in_errors_and_defaults():
  cfg = defaults.loss(vae_kl=dict(weight=1.0, warmup_steps=0), contractive=dict(weight=0.1))
  assert cfg.to_dict() == {'vae_kl': {'weight': 1.0, 'warmup_steps': 0},
                           'contractive': {'weight': 0.1, 'method': 'exact'}}
  with pytest.raises(AelabError) as err:
    losses.compose({'vae_kl': {'weight': 1.0, 'beta': 4.0}})
  assert "'beta'" in str(err.value) and 'weight, warmup_steps' in str(err.value)
  with pytest.raises(AelabError, match="needs the posterior aux\\['mean'\\]"):
    term_fns.vae_kl(Outputs(x=np.zeros((2, 2)), recon=np.zeros((2, 2)), aux={'code': 0}, params={}))
