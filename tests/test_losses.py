"""Tests for aelab.losses: each term against numpy, composition, errors, grads."""

import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.test_util import check_grads

from aelab import losses
from aelab.losses import terms as term_fns
from aelab.config import catalog, defaults
from aelab.errors import AelabError
from aelab.losses import Outputs

pytestmark = pytest.mark.quick  # the fast tier: python -m pytest -m quick



def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def _outputs(seed=0, n=16, d=12, hidden=(8, 5), dtype=np.float32):
  """Random Outputs shaped like a 2-layer encoder AE's, as numpy arrays."""
  rng = np.random.default_rng(seed)
  x = rng.uniform(size=(n, d))
  logits = rng.normal(size=(n, d)) * 2.0
  enc = tuple(_sigmoid(rng.normal(size=(n, h))) for h in hidden)
  dec = (np.tanh(rng.normal(size=(n, hidden[0]))),)
  params = {
      'encoder_0': {'kernel': rng.normal(size=(d, hidden[0])),
                    'bias': rng.normal(size=(hidden[0],))},
      'encoder_1': {'kernel': rng.normal(size=(hidden[0], hidden[1])),
                    'bias': rng.normal(size=(hidden[1],))},
      'decoder': {'Dense_0': {'kernel': rng.normal(size=(hidden[1], d)),
                              'bias': rng.normal(size=(d,))}},
      'scale': rng.normal(size=(3,)),
  }
  cast = lambda t: jax.tree_util.tree_map(lambda a: np.asarray(a, dtype), t)
  aux = {'logits': logits, 'encoder': enc, 'code': enc[-1], 'decoder': dec}
  return Outputs(x=cast(x), recon=cast(_sigmoid(logits)), aux=cast(aux),
                 params=cast(params))


def _np_kl(rho, h):
  rh = np.clip(h.astype(np.float64).mean(0), 1e-6, 1 - 1e-6)
  return np.sum(rho * np.log(rho / rh) + (1 - rho) * np.log((1 - rho) / (1 - rh)))


# --- each term against numpy -------------------------------------------------


def test_mse_both_reductions():
  out = _outputs()
  err = (out.recon.astype(np.float64) - out.x) ** 2
  np.testing.assert_allclose(term_fns.reconstruction(out), err.mean(), rtol=1e-6)
  np.testing.assert_allclose(
      term_fns.reconstruction(out, kind='mse', reduction='sum'),
      err.sum(1).mean(), rtol=1e-6)
  # 'sum' is the per-example figure: d times the per-element one.
  np.testing.assert_allclose(
      term_fns.reconstruction(out, reduction='sum'),
      12 * term_fns.reconstruction(out, reduction='mean'), rtol=1e-6)


def test_mse_sums_over_all_feature_axes_of_images():
  rng = np.random.default_rng(1)
  x = rng.uniform(size=(4, 3, 3, 2)).astype(np.float32)
  r = rng.uniform(size=(4, 3, 3, 2)).astype(np.float32)
  out = Outputs(x=x, recon=r, aux={}, params={})
  per_example = ((r.astype(np.float64) - x) ** 2).reshape(4, -1).sum(1)
  np.testing.assert_allclose(term_fns.reconstruction(out, reduction='sum'),
                             per_example.mean(), rtol=1e-6)


def test_bce_from_logits_matches_formula():
  out = _outputs()
  t = out.x.astype(np.float64)
  s = _sigmoid(out.aux['logits'].astype(np.float64))
  bce = -(t * np.log(s) + (1 - t) * np.log(1 - s))
  np.testing.assert_allclose(term_fns.reconstruction(out, kind='bce'),
                             bce.mean(), rtol=1e-5)
  np.testing.assert_allclose(
      term_fns.reconstruction(out, kind='bce', reduction='sum'),
      bce.sum(1).mean(), rtol=1e-5)


def test_bce_is_stable_for_saturated_logits():
  x = np.array([[0.0, 1.0, 1.0, 0.0]], np.float32)
  logits = np.array([[-200.0, 200.0, -30.0, 30.0]], np.float32)
  out = Outputs(x=x, recon=jax.nn.sigmoid(logits), aux={'logits': logits},
                params={})
  value = float(term_fns.reconstruction(out, kind='bce', reduction='sum'))
  # log(1 + e^-200) ~ 0 twice; softplus(30) ~ 30 twice.
  np.testing.assert_allclose(value, 60.0, rtol=1e-6)


def test_bce_without_logits_is_an_error():
  out = _outputs()
  out = out.replace(aux={'code': out.aux['code']})
  with pytest.raises(AelabError, match='logits'):
    term_fns.reconstruction(out, kind='bce')


def test_l1_activity_on_code_and_on_a_layer():
  rng = np.random.default_rng(2)
  out = _outputs()
  code = rng.normal(size=out.aux['code'].shape).astype(np.float32)
  out = out.replace(aux={**out.aux, 'code': code})
  np.testing.assert_allclose(term_fns.l1_activity(out),
                             np.abs(code.astype(np.float64)).sum(1).mean(),
                             rtol=1e-6)
  h1 = out.aux['encoder'][0].astype(np.float64)
  for layer in (1, '1'):
    np.testing.assert_allclose(term_fns.l1_activity(out, layer=layer),
                               np.abs(h1).sum(1).mean(), rtol=1e-6)


def test_kl_sparsity_matches_formula():
  out = _outputs()
  for rho, layer, h in ((0.05, 'code', out.aux['code']),
                        (0.2, 1, out.aux['encoder'][0]),
                        (0.1, '2', out.aux['encoder'][1])):
    np.testing.assert_allclose(
        term_fns.kl_sparsity(out, rho=rho, layer=layer), _np_kl(rho, h),
        rtol=1e-5)


def test_kl_sparsity_is_zero_at_target_and_clips_dead_units():
  n, h = 10, 4
  on_target = np.full((n, h), 0.05, np.float32)
  out = Outputs(x=np.zeros((n, 1)), recon=np.zeros((n, 1)),
                aux={'code': on_target, 'encoder': (on_target,)}, params={})
  np.testing.assert_allclose(term_fns.kl_sparsity(out, rho=0.05), 0.0, atol=1e-6)
  dead = np.zeros((n, h), np.float32)
  out = out.replace(aux={'code': dead, 'encoder': (dead,)})
  rho = 0.05
  expected = h * (rho * np.log(rho / 1e-6)
                  + (1 - rho) * np.log((1 - rho) / (1 - 1e-6)))
  value = float(term_fns.kl_sparsity(out, rho=rho))
  assert np.isfinite(value)
  np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_weight_decay_sums_kernels_only():
  out = _outputs()
  p = out.params
  kernels = [p['encoder_0']['kernel'], p['encoder_1']['kernel'],
             p['decoder']['Dense_0']['kernel']]
  expected = 0.5 * sum(np.sum(k.astype(np.float64) ** 2) for k in kernels)
  np.testing.assert_allclose(term_fns.weight_decay(out), expected, rtol=1e-6)
  # Biases and other leaves do not count.
  everything = 0.5 * sum(np.sum(np.asarray(a, np.float64) ** 2)
                         for a in jax.tree_util.tree_leaves(p))
  assert everything > expected + 1.0
  assert float(term_fns.weight_decay(out.replace(params={'bias': np.ones(3)}))) == 0


def test_layer_activations_lookup_and_errors():
  out = _outputs()
  aux = out.aux
  assert losses.layer_activations(aux, 'code') is aux['code']
  assert losses.layer_activations(aux, 1) is aux['encoder'][0]
  assert losses.layer_activations(aux, '2') is aux['encoder'][1]
  for bad in (0, 3, '3', 'first', '-1', True, 1.0):
    with pytest.raises(AelabError) as err:
      losses.layer_activations(aux, bad)
    assert repr(bad) in str(err.value) or str(bad) in str(err.value)
    assert "'code'" in str(err.value)
  with pytest.raises(AelabError, match="valid layers: 'code', 1, 2"):
    losses.layer_activations(aux, 3)


# --- compose and defaults ----------------------------------------------------


def _cfg(**terms):
  return ml_collections.ConfigDict(terms)


def test_compose_sums_weighted_terms_and_reports_each():
  out = _outputs()
  cfg = _cfg(reconstruction=dict(weight=1.0, kind='bce', reduction='sum'),
             l1_activity=dict(weight=1e-3, layer=1),
             kl_sparsity=dict(weight=3.0, rho=0.1),
             weight_decay=dict(weight=1e-4))
  total, terms = losses.compose(cfg)(out)
  assert set(terms) == {'reconstruction', 'l1_activity', 'kl_sparsity',
                        'weight_decay'}
  parts = {
      'reconstruction': term_fns.reconstruction(out, kind='bce', reduction='sum'),
      'l1_activity': term_fns.l1_activity(out, layer=1),
      'kl_sparsity': term_fns.kl_sparsity(out, rho=0.1),
      'weight_decay': term_fns.weight_decay(out),
  }
  for name, value in parts.items():
    np.testing.assert_allclose(terms[name], value, rtol=1e-6)
  expected = (parts['reconstruction'] + 1e-3 * parts['l1_activity']
              + 3.0 * parts['kl_sparsity'] + 1e-4 * parts['weight_decay'])
  np.testing.assert_allclose(total, expected, rtol=1e-6)


def test_compose_skips_weight_zero_terms():
  out = _outputs()
  cfg = _cfg(reconstruction=dict(weight=2.0),
             # Would be an error if evaluated: this model has two layers.
             l1_activity=dict(weight=0.0, layer=7),
             weight_decay=dict(weight=0))
  total, terms = losses.compose(cfg)(out)
  assert set(terms) == {'reconstruction'}
  np.testing.assert_allclose(total, 2.0 * term_fns.reconstruction(out), rtol=1e-6)


def test_compose_accepts_plain_dicts():
  out = _outputs()
  total, _ = losses.compose({'weight_decay': {'weight': 0.5}})(out)
  np.testing.assert_allclose(total, 0.5 * term_fns.weight_decay(out), rtol=1e-6)


def test_compose_is_jittable():
  out = _outputs()
  loss_fn = losses.compose(defaults.loss(
      reconstruction=dict(weight=1.0, kind='bce'),
      kl_sparsity=dict(weight=3.0),
      l1_activity=dict(weight=1e-3, layer='1'),
      weight_decay=dict(weight=1e-4)))
  eager_total, eager_terms = loss_fn(out)
  jit_total, jit_terms = jax.jit(loss_fn)(out)
  np.testing.assert_allclose(jit_total, eager_total, rtol=1e-6)
  for name in eager_terms:
    np.testing.assert_allclose(jit_terms[name], eager_terms[name], rtol=1e-6)
  grads = jax.jit(jax.grad(lambda o: loss_fn(o)[0]))(out)
  assert np.all(np.isfinite(grads.params['encoder_0']['kernel']))


def test_unknown_term_lists_terms():
  with pytest.raises(AelabError) as err:
    losses.compose(_cfg(sparsity=dict(weight=1.0)))
  msg = str(err.value)
  assert "'sparsity'" in msg
  for name in catalog.names('term'):
    assert name in msg


def test_unknown_term_is_an_error_even_at_weight_zero():
  with pytest.raises(AelabError, match='jacobian_penalty'):
    losses.compose(_cfg(reconstruction=dict(weight=1.0),
                        jacobian_penalty=dict(weight=0.0)))


def test_unknown_option_names_it_and_the_valid_ones():
  with pytest.raises(AelabError) as err:
    losses.compose(_cfg(kl_sparsity=dict(weight=1.0, beta=3.0)))
  msg = str(err.value)
  assert "'beta'" in msg and 'kl_sparsity' in msg
  for option in ('weight', 'rho', 'layer'):
    assert option in msg


def test_missing_weight_and_bad_values_are_errors():
  with pytest.raises(AelabError, match="'weight_decay' has no weight"):
    losses.compose(_cfg(weight_decay=dict()))
  with pytest.raises(AelabError, match='weight'):
    losses.compose(_cfg(weight_decay=dict(weight='big')))
  with pytest.raises(AelabError, match="'huber'.*mse, bce"):
    losses.compose(_cfg(reconstruction=dict(weight=1.0, kind='huber')))
  with pytest.raises(AelabError, match="'max'.*mean, sum"):
    losses.compose(_cfg(reconstruction=dict(weight=1.0, reduction='max')))
  with pytest.raises(AelabError, match='rho'):
    losses.compose(_cfg(kl_sparsity=dict(weight=1.0, rho=1.5)))
  with pytest.raises(AelabError, match="'top'"):
    losses.compose(_cfg(l1_activity=dict(weight=1.0, layer='top')))
  with pytest.raises(AelabError, match='no active loss term'):
    losses.compose(_cfg(weight_decay=dict(weight=0.0)))
  with pytest.raises(AelabError, match='weight_decay=dict'):
    losses.compose({'weight_decay': 1e-4})


def test_kl_sparsity_on_a_non_sigmoid_layer_is_an_error():
  acts = {'1': 'relu', 2: 'sigmoid', 'code': 'sigmoid'}
  with pytest.raises(AelabError) as err:
    losses.compose(_cfg(kl_sparsity=dict(weight=1.0, layer=1)),
                   layer_activations=acts)
  msg = str(err.value)
  assert "'1'" in msg and "'relu'" in msg and 'sigmoid' in msg
  with pytest.raises(AelabError, match="'code'.*'tanh'"):
    losses.compose(_cfg(kl_sparsity=dict(weight=1.0)),
                   layer_activations={'code': 'tanh'})
  # Without a 'code' entry, the code is the highest numbered layer.
  with pytest.raises(AelabError, match="'tanh'"):
    losses.compose(_cfg(kl_sparsity=dict(weight=1.0)),
                   layer_activations={1: 'sigmoid', 2: 'tanh'})
  # Sigmoid layers are fine, and so is a relu layer when the term is off.
  losses.compose(_cfg(kl_sparsity=dict(weight=1.0, layer='2')),
                 layer_activations=acts)
  losses.compose(_cfg(reconstruction=dict(weight=1.0),
                      kl_sparsity=dict(weight=0.0, layer=1)),
                 layer_activations=acts)


def test_bce_with_targets_outside_unit_interval_is_an_error():
  cfg = _cfg(reconstruction=dict(weight=1.0, kind='bce'))
  with pytest.raises(AelabError) as err:
    losses.compose(cfg, targets_in_unit_interval=False)
  msg = str(err.value)
  assert '[0, 1]' in msg and "'none'" in msg and "kind='mse'" in msg
  losses.compose(cfg, targets_in_unit_interval=True)
  losses.compose(cfg)
  losses.compose(_cfg(reconstruction=dict(weight=1.0, kind='mse')),
                 targets_in_unit_interval=False)


def test_a_terms_options_are_its_signature_read_without_importing_it():
  """The catalog reads each @term function's keyword defaults from its source (configs stay
  jax-free); they are the function's own: there is no table to keep in sync."""
  names = catalog.names('term')
  assert {'reconstruction', 'kl_sparsity', 'auxk', 'softmax_cross_entropy'} <= set(names)
  for name in names:
    params = list(inspect.signature(losses.term_function(name)).parameters.values())[1:]
    assert {p.name: p.default for p in params} == catalog.options('term', name), name
  assert not hasattr(defaults, 'LOSS_TERMS') and not hasattr(losses, 'TERMS')


def test_defaults_fill_every_option():
  cfg = defaults.loss(reconstruction=dict(weight=1, kind='bce'),
                        weight_decay=dict(weight=1e-4),
                        kl_sparsity=dict(weight=3.0, layer='1'))
  assert isinstance(cfg, ml_collections.ConfigDict)
  assert cfg.to_dict() == {
      'reconstruction': {'weight': 1.0, 'kind': 'bce', 'reduction': 'mean'},
      'weight_decay': {'weight': 1e-4},
      'kl_sparsity': {'weight': 3.0, 'rho': 0.05, 'layer': '1'},
  }
  assert isinstance(cfg.reconstruction.weight, float)
  # Every option can be overridden, as a command-line flag would.
  cfg.kl_sparsity.rho = 0.1
  cfg.reconstruction.weight = 0.5
  out = _outputs()
  _, terms = losses.compose(cfg)(out)
  np.testing.assert_allclose(terms['kl_sparsity'],
                             _np_kl(0.1, out.aux['encoder'][0]), rtol=1e-5)
  with pytest.raises(AelabError, match='unknown loss term .*; valid choices: auxk'):
    defaults.loss(sparse=dict(weight=1.0))
  with pytest.raises(AelabError, match="'beta'"):
    defaults.loss(kl_sparsity=dict(weight=1.0, beta=3))


# --- gradients ---------------------------------------------------------------


def test_each_term_grads_match_finite_differences(x64):
  out = _outputs(dtype=np.float64)
  rng = np.random.default_rng(3)
  # Keep |h| away from 0, where |h| has its kink.
  signed = (rng.choice([-1.0, 1.0], size=(16, 5))
            * rng.uniform(0.1, 1.0, size=(16, 5)))
  x = jnp.asarray(out.x)
  aux = jax.tree_util.tree_map(jnp.asarray, out.aux)

  def with_recon(recon):
    return Outputs(x=x, recon=recon, aux=aux, params={})

  def with_logits(logits):
    return Outputs(x=x, recon=jax.nn.sigmoid(logits),
                   aux={**aux, 'logits': logits}, params={})

  def with_code(code):
    return Outputs(x=x, recon=x, aux={**aux, 'code': code}, params={})

  cases = [
      (lambda r: term_fns.reconstruction(with_recon(r)), out.recon),
      (lambda r: term_fns.reconstruction(with_recon(r), reduction='sum'),
       out.recon),
      (lambda z: term_fns.reconstruction(with_logits(z), kind='bce'),
       out.aux['logits']),
      (lambda z: term_fns.reconstruction(with_logits(z), kind='bce',
                                       reduction='sum'), out.aux['logits']),
      (lambda h: term_fns.l1_activity(with_code(h)), signed),
      (lambda h: term_fns.kl_sparsity(with_code(h), rho=0.05), out.aux['code']),
      (lambda p: term_fns.weight_decay(Outputs(x=x, recon=x, aux=aux, params=p)),
       out.params),
  ]
  for fn, arg in cases:
    arg = jax.tree_util.tree_map(jnp.asarray, arg)
    assert jax.tree_util.tree_leaves(arg)[0].dtype == jnp.float64
    check_grads(jax.jit(fn), (arg,), order=1, modes=['rev'])


def test_weight_decay_grad_is_kernel_and_zero_for_biases():
  out = _outputs()
  grads = jax.grad(lambda p: term_fns.weight_decay(out.replace(params=p)))(
      out.params)
  np.testing.assert_allclose(grads['encoder_0']['kernel'],
                             out.params['encoder_0']['kernel'], rtol=1e-6)
  np.testing.assert_array_equal(grads['encoder_0']['bias'], 0.0)
  np.testing.assert_array_equal(grads['scale'], 0.0)


class _SigmoidAE(nn.Module):
  """n -> hidden -> n, sigmoid everywhere; follows the model contract."""
  hidden: int

  @nn.compact
  def __call__(self, x, *, train=False):
    del train
    code = nn.sigmoid(nn.Dense(self.hidden, name='encoder_0')(x))
    logits = nn.Dense(x.shape[-1], name='decoder_0')(code)
    aux = {'logits': logits, 'encoder': (code,), 'code': code, 'decoder': ()}
    return nn.sigmoid(logits), aux


def test_composed_grads_match_ufldl_backprop(x64):
  """The UFLDL sparse autoencoder gradient, derived by hand, equals jax.grad.

  J = 1/m sum_i 0.5 ||a3_i - x_i||^2 + lambda/2 sum W^2 + beta sum KL(rho||rho_hat)
  is reconstruction(kind='mse', reduction='sum') at weight 0.5 plus
  weight_decay at weight lambda plus kl_sparsity at weight beta.
  """
  m, n, h = 20, 8, 5
  lam, beta, rho = 1e-3, 3.0, 0.1
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.uniform(size=(m, n)))
  model = _SigmoidAE(hidden=h)
  params = jax.tree_util.tree_map(
      lambda a: a.astype(jnp.float64),
      model.init(jax.random.PRNGKey(0), x)['params'])
  loss_fn = losses.compose(defaults.loss(
      reconstruction=dict(weight=0.5, reduction='sum'),
      weight_decay=dict(weight=lam),
      kl_sparsity=dict(weight=beta, rho=rho)),
      layer_activations={'1': 'sigmoid', 'code': 'sigmoid'})

  def objective(p):
    recon, aux = model.apply({'params': p}, x)
    return loss_fn(Outputs(x=x, recon=recon, aux=aux, params=p))[0]

  grads = jax.jit(jax.grad(objective))(params)

  xn = np.asarray(x)
  w1 = np.asarray(params['encoder_0']['kernel'])
  b1 = np.asarray(params['encoder_0']['bias'])
  w2 = np.asarray(params['decoder_0']['kernel'])
  b2 = np.asarray(params['decoder_0']['bias'])
  a2 = _sigmoid(xn @ w1 + b1)  # [m, h]
  a3 = _sigmoid(a2 @ w2 + b2)  # [m, n]
  rho_hat = a2.mean(0)
  d3 = (a3 - xn) * a3 * (1 - a3) / m
  sparse = beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat)) / m
  d2 = (d3 @ w2.T + sparse) * a2 * (1 - a2)
  expected = {
      'encoder_0': {'kernel': xn.T @ d2 + lam * w1, 'bias': d2.sum(0)},
      'decoder_0': {'kernel': a2.T @ d3 + lam * w2, 'bias': d3.sum(0)},
  }
  for layer, leaves in expected.items():
    for name, value in leaves.items():
      assert grads[layer][name].shape == value.shape
      np.testing.assert_allclose(grads[layer][name], value, rtol=1e-9,
                                 atol=1e-12)


def test_bce_from_logits_agrees_with_optax_in_value_and_gradient():
  import optax
  logits = jnp.linspace(-40.0, 40.0, 801).reshape(1, -1)
  x = jnp.broadcast_to(jnp.linspace(0.0, 1.0, 801), logits.shape)
  ours = np.asarray(losses.bce_from_logits(logits, x), np.float64)
  theirs = np.asarray(optax.sigmoid_binary_cross_entropy(logits, x), np.float64)
  l64, x64_ = np.asarray(logits, np.float64), np.asarray(x, np.float64)
  exact = np.logaddexp(0, l64) - l64 * x64_   # softplus(l) - l x, in float64
  err = lambda v: np.max(np.abs(v - exact) / np.maximum(np.abs(exact), 1e-3))  # noqa: E731
  assert err(ours) < 1e-6 and err(ours) <= 2 * err(theirs)   # float32-accurate, as optax
  grad = jax.grad(lambda l: jnp.sum(losses.bce_from_logits(l, x)))(logits)
  np.testing.assert_allclose(grad, jax.nn.sigmoid(logits) - x, atol=1e-6)  # d/dl = p - x
