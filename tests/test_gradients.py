"""Gradients a confused user can read: backprop of a sigmoid autoencoder written out in numpy
equals jax.grad of the same network built from aelab's pieces; and every loss term's gradient
through a dense model's parameters matches finite differences.

(tests/test_losses.py checks each term's gradient with respect to its direct inputs, and the
UFLDL sparse-autoencoder gradient of a one-hidden-layer net; this file adds deeper networks and
the chain rule through aelab's dense model.)
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from aelab import losses, models
from aelab.config import catalog, defaults
from aelab.losses import terms as term_fns
from aelab.errors import AelabError



def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def _f64(tree):
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _user_network(n, k):
  """The user's X [m, n] -> sigmoid (k) -> sigmoid (n) -> linear (n) as aelab's dense model:
  encoder_1 [n, k] (the code), decoder_1 [k, n] (a decoder hidden layer), decoder_2 [n, n] (the
  output layer)."""
  return defaults.model('dense', hidden=(k,), activation='sigmoid', mirror=False, decoder=(n,),
                        decoder_activation='sigmoid', output_activation='linear')


# S = 1/(2m) sum_i ||x_hat_i - x_i||^2: the per-example sum of squares, averaged over the batch,
# at weight 0.5.
HALF_SSE = defaults.loss(reconstruction=dict(weight=0.5, kind='mse', reduction='sum'))


def _by_hand(x, w1, b1, w2, b2, w3, b3):
  """S and its gradients, by hand. Row vectors: z = h_prev @ W + b, W [in, out], b a vector
  [out] that broadcasts over the m rows."""
  m = x.shape[0]
  h1 = _sigmoid(x @ w1 + b1)                 # [m, k]
  h2 = _sigmoid(h1 @ w2 + b2)                # [m, n]
  x_hat = h2 @ w3 + b3                       # [m, n], linear output
  s = np.sum((x_hat - x) ** 2) / (2 * m)
  ds_dxhat = (x_hat - x) / m                 # [m, n]
  ds_dw3 = h2.T @ ds_dxhat                   # [n, n]
  ds_db3 = ds_dxhat.sum(axis=0)              # [n]: sum over rows
  ds_dh2 = ds_dxhat @ w3.T                   # [m, n]
  ds_dz2 = h2 * (1 - h2) * ds_dh2            # [m, n]: elementwise, NOT a matrix product
  ds_dw2 = h1.T @ ds_dz2                     # [k, n]
  ds_db2 = ds_dz2.sum(axis=0)                # [n]
  ds_dh1 = ds_dz2 @ w2.T                     # [m, k]
  ds_dz1 = h1 * (1 - h1) * ds_dh1            # [m, k]
  ds_dw1 = x.T @ ds_dz1                      # [n, k]
  ds_db1 = ds_dz1.sum(axis=0)                # [k]
  grads = {'encoder_1': (ds_dw1, ds_db1), 'decoder_1': (ds_dw2, ds_db2),
           'decoder_2': (ds_dw3, ds_db3)}
  return s, grads, {'h2': h2, 'ds_dh2': ds_dh2, 'ds_dz2': ds_dz2}


def test_sigmoid_autoencoder_backprop_by_hand_equals_jax_grad(x64):
  """The user's asymmetric network, built by aelab's dense model (mirror=False): the hand
  derivation equals jax.grad at float64, and finite differences."""
  m, n, k = 12, 7, 4
  x = np.random.default_rng(0).uniform(size=(m, n))
  model = models.build(_user_network(n, k), (n,))
  params = _f64(model.init(jax.random.PRNGKey(0), jnp.asarray(x))['params'])
  assert jax.tree.map(np.shape, params) == {
      'encoder_1': {'kernel': (n, k), 'bias': (k,)}, 'decoder_1': {'kernel': (k, n), 'bias': (n,)},
      'decoder_2': {'kernel': (n, n), 'bias': (n,)}}
  loss_fn = losses.compose(HALF_SSE)

  def cost(p):
    x_hat, aux = model.apply({'params': p}, jnp.asarray(x))
    return loss_fn(losses.Outputs(x=jnp.asarray(x), recon=x_hat, aux=aux, params=p))[0]

  grads = jax.jit(jax.grad(cost))(params)
  p = jax.tree.map(np.asarray, params)
  layers = [p[name][part] for name in ('encoder_1', 'decoder_1', 'decoder_2')
            for part in ('kernel', 'bias')]
  s, expected, t = _by_hand(x, *layers)
  assert float(cost(params)) == pytest.approx(s, rel=1e-12)
  assert t['ds_dz2'].shape == t['h2'].shape == (m, n)
  # The confused user's dS/dz2, (h2 * (1 - h2))^T @ dS/dh2, is [n, n]: not even z2's shape.
  assert ((t['h2'] * (1 - t['h2'])).T @ t['ds_dh2']).shape == (n, n) != t['ds_dz2'].shape
  for layer, (dw, db) in expected.items():
    assert grads[layer]['kernel'].shape == dw.shape and grads[layer]['bias'].shape == db.shape
    assert db.ndim == 1  # bias gradients are vectors, like the biases
    np.testing.assert_allclose(grads[layer]['kernel'], dw, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(grads[layer]['bias'], db, rtol=1e-10, atol=1e-14)
  # Central differences of the hand-written cost, entry by entry, for W2 and b2 (the layer of the
  # question), and jax's own finite-difference check of every parameter.
  np.testing.assert_allclose(expected['decoder_1'][0], _differences(x, layers, 2),
                             rtol=1e-6, atol=1e-10)
  np.testing.assert_allclose(expected['decoder_1'][1], _differences(x, layers, 3),
                             rtol=1e-6, atol=1e-10)
  check_grads(jax.jit(cost), (params,), order=1, modes=['rev'])


def _differences(x, layers, index, eps=1e-6):
  """dS/d(layers[index]) by central differences of the hand-written cost, entry by entry."""
  out = np.zeros_like(layers[index])
  for j in np.ndindex(out.shape):
    up, down = list(layers), list(layers)
    up[index], down[index] = layers[index].copy(), layers[index].copy()
    up[index][j] += eps
    down[index][j] -= eps
    out[j] = (_by_hand(x, *up)[0] - _by_hand(x, *down)[0]) / (2 * eps)
  return out


def _backprop(x, layers, lam):
  """Gradients of 1/(2m) sum SSE + lam/2 sum W^2 for a stack of (W, b, act) layers, by hand."""
  m = x.shape[0]
  hs = [x]
  for w, b, act in layers:
    z = hs[-1] @ w + b
    hs.append(_sigmoid(z) if act == 'sigmoid' else z)
  delta = (hs[-1] - x) / m                   # dS/d(output)
  grads = []
  for i in reversed(range(len(layers))):
    w, _, act = layers[i]
    out = hs[i + 1]
    dz = delta * out * (1 - out) if act == 'sigmoid' else delta   # elementwise
    grads.append((hs[i].T @ dz + lam * w, dz.sum(axis=0)))
    delta = dz @ w.T
  return grads[::-1]


def test_aelab_dense_model_backprop_by_hand_equals_jax_grad(x64):
  """aelab's dense model with hidden=(k, n), sigmoid, linear output is n -> k -> n -> k -> n
  (the decoder mirrors the encoder); the same hand-written loop, plus UFLDL weight decay."""
  m, n, k, lam = 10, 6, 3, 1e-3
  cfg = defaults.model('dense', hidden=(k, n), activation='sigmoid', output_activation='linear')
  model = models.build(cfg, (n,))
  rng = np.random.default_rng(1)
  x = rng.uniform(size=(m, n))
  params = _f64(model.init(jax.random.PRNGKey(1), jnp.asarray(x))['params'])
  loss_fn = losses.compose(defaults.loss(
      reconstruction=dict(weight=0.5, kind='mse', reduction='sum'),
      weight_decay=dict(weight=lam)))

  def cost(p):
    recon, aux = model.apply({'params': p}, jnp.asarray(x))
    return loss_fn(losses.Outputs(x=jnp.asarray(x), recon=recon, aux=aux, params=p))[0]

  grads = jax.jit(jax.grad(cost))(params)
  names = ['encoder_1', 'encoder_2', 'decoder_1', 'decoder_2']
  acts = ['sigmoid', 'sigmoid', 'sigmoid', 'linear']
  p = jax.tree.map(np.asarray, params)
  layers = [(p[nm]['kernel'], p[nm]['bias'], a) for nm, a in zip(names, acts)]
  assert [w.shape for w, _, _ in layers] == [(n, k), (k, n), (n, k), (k, n)]
  for name, (dw, db) in zip(names, _backprop(x, layers, lam)):
    np.testing.assert_allclose(grads[name]['kernel'], dw, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(grads[name]['bias'], db, rtol=1e-10, atol=1e-14)


DISENTANGLING = ('kl_capacity', 'total_correlation', 'dip', 'factor_tc', 'discriminator')


def _term_cases():
  cases = [('reconstruction', {'kind': kind, 'reduction': reduction})  # logistic needs a VAE
           for kind in term_fns.RECONSTRUCTION_KINDS if kind != 'logistic'
           for reduction in term_fns.REDUCTIONS]
  # vae_kl needs a VAE, softmax_cross_entropy a classifier (tests/test_classification.py), the
  # sparse-dictionary terms an sae (below), iwae and kl_sample a likelihood and the vq terms a
  # codebook (tests/test_generative.py, tests/test_vqvae.py), the disentangling terms a VAE or a
  # FactorVAE (below).
  skip = ('reconstruction', 'vae_kl', 'softmax_cross_entropy', 'sae_l1', 'sae_l0', 'auxk',
          'gated_l1', 'gated_aux', 'matryoshka_mse', 'iwae', 'kl_sample', 'vq_commitment',
          'vq_codebook', *DISENTANGLING)
  return cases + [(name, {}) for name in catalog.names('term') if name not in skip]


@pytest.mark.parametrize('name,options', _term_cases(),
                         ids=lambda v: v if isinstance(v, str) else '-'.join(map(str, v.values())))
def test_every_loss_term_through_the_dense_model_matches_finite_differences(x64, name, options):
  cfg = defaults.model('dense', hidden=(5, 3), activation='sigmoid', output_activation='sigmoid')
  model = models.build(cfg, (8,))
  x = jnp.asarray(np.random.default_rng(2).uniform(0.05, 0.95, size=(6, 8)))
  params = _f64(model.init(jax.random.PRNGKey(2), x)['params'])
  loss_fn = losses.compose({name: {'weight': 1.0, **options}},
                           layer_activations=model.layer_activations(),
                           targets_in_unit_interval=True)

  def objective(p):
    recon, aux = model.apply({'params': p}, x)
    encode = lambda xi: model.apply({'params': p}, xi, method=model.encode)  # noqa: E731
    weights = lambda m: model.apply({'params': p}, method=m)  # noqa: E731
    apply = lambda m, *a, rng=None: model.apply({'params': p}, *a, method=m)  # noqa: E731
    return loss_fn(losses.Outputs(x=x, recon=recon, aux=aux, params=p, encode=encode,
                                  weights=weights, apply=apply, rng=jax.random.PRNGKey(0)))[0]

  value = jax.jit(objective)(params)
  assert np.isfinite(value) and float(value) != 0.0
  check_grads(jax.jit(objective), (params,), order=1, modes=['rev'])


def test_sae_terms_through_the_sae_match_finite_differences(x64):
  """normalized_mse + sae_l1 through a ReLU dictionary with free decoder norms, normalized_mse
  through a TopK one with unit-norm decoder rows (smooth where no pre-activation sits at a kink
  or a tie, which these inputs avoid), through a gated one (its gated_l1 and gated_aux hold
  the decoder fixed by design: tests/test_sae.py), a Matryoshka TopK's nested reconstructions,
  and AuxK, whose residual is held fixed by design: its
  gradient is that of the same loss with the residual a constant, checked against finite
  differences of that."""
  x = jnp.asarray(np.random.default_rng(3).normal(size=(6, 8)))
  stats = {'since_fired': jnp.array([0] * 10 + [5, 5], jnp.int32)}  # two dead latents

  def setup(activation, widths=()):
    cfg = defaults.model('sae', latents=12, k=3, activation=activation, dead_steps=1,
                         normalize_decoder=activation != 'relu', matryoshka_widths=widths)
    model = models.build(cfg, (8,))
    return model, _f64(model.init(jax.random.PRNGKey(4), x)['params'])

  def objective(model, terms, recon_fixed=None):
    loss_fn = losses.compose({k: {'weight': w} for k, w in terms.items()})

    def f(p):
      recon, aux = model.apply({'params': p}, x, stats=stats)
      recon = recon if recon_fixed is None else recon_fixed
      return loss_fn(losses.Outputs(x=x, recon=recon, aux=aux, params=p))[0]
    return jax.jit(f)

  for activation, widths, terms in (
      ('relu', (), {'normalized_mse': 1.0, 'sae_l1': 0.1}),
      ('topk', (), {'normalized_mse': 1.0}),
      ('gated', (), {'normalized_mse': 1.0}),
      ('topk', (4, 8, 12), {'matryoshka_mse': 1.0})):
    model, params = setup(activation, widths)
    assert float(objective(model, terms)(params)) > 0
    check_grads(objective(model, terms), (params,), order=1, modes=['rev'], eps=1e-6)
  model, params = setup('topk')
  recon0 = model.apply({'params': params}, x, stats=stats)[0]
  auxk, fixed = objective(model, {'auxk': 1.0}), objective(model, {'auxk': 1.0}, recon0)
  assert float(auxk(params)) > 0
  jax.tree.map(np.testing.assert_allclose, jax.grad(auxk)(params), jax.grad(fixed)(params))
  check_grads(fixed, (params,), order=1, modes=['rev'], eps=1e-6)


@pytest.mark.parametrize('name', DISENTANGLING)
def test_the_disentangling_terms_through_a_factor_vae_match_finite_differences(x64, name):
  """Each term of aelab/losses/disentangle_terms.py through the FactorVAE (a VAE with a
  discriminator), its sampling keys fixed; kl_capacity at a step where C = 1. factor_tc and
  discriminator hold the other group's parameters (stop_gradient), so each is checked as a
  function of the group it trains: the VAE's, and the discriminator's."""
  model = models.build(defaults.model('factor_vae', hidden=(5,), latent=2, discriminator=(4,)),
                       (8,))
  x = jnp.asarray(np.random.default_rng(3).uniform(0.05, 0.95, size=(6, 8)))
  key = jax.random.PRNGKey(4)
  params = _f64(model.init({'params': jax.random.PRNGKey(3), 'noise': key}, x)['params'])
  opts = {'capacity': 2.0, 'steps': 100} if name == 'kl_capacity' else {}
  loss_fn = losses.compose({name: {'weight': 1.0, **opts}})

  trains = {'discriminator': lambda n: n == 'discriminator'}.get(
      name, lambda n: n != 'discriminator' or name != 'factor_tc')
  own = {n: v for n, v in params.items() if trains(n)}
  held = {n: v for n, v in params.items() if not trains(n)}

  def objective(q):
    p = {**held, **q}
    recon, aux = model.apply({'params': p}, x, rngs={'noise': key})
    return loss_fn(losses.Outputs(x=x, recon=recon, aux=aux, params=p, step=jnp.int32(50)))[0]

  assert np.isfinite(jax.jit(objective)(own))
  check_grads(jax.jit(objective), (own,), order=1, modes=['rev'])


def test_vae_kl_through_the_vae_matches_finite_differences(x64):
  """vae_kl needs a posterior (aux['mean'], aux['logvar']): checked through the VAE, with a
  fixed sampling key so the objective is a deterministic function of the parameters."""
  cfg = defaults.model('vae', hidden=(5,), latent=2)
  model = models.build(cfg, (8,))
  x = jnp.asarray(np.random.default_rng(3).uniform(0.05, 0.95, size=(6, 8)))
  key = jax.random.PRNGKey(4)
  params = _f64(model.init({'params': jax.random.PRNGKey(3), 'noise': key}, x)['params'])
  loss_fn = losses.compose({'vae_kl': {'weight': 1.0}})
  with pytest.raises(AelabError, match="vae_kl needs the posterior"):  # the dense model has none
    loss_fn(losses.Outputs(x=x, recon=x, aux={'code': x}, params={}))

  def objective(p):
    recon, aux = model.apply({'params': p}, x, rngs={'noise': key})
    return loss_fn(losses.Outputs(x=x, recon=recon, aux=aux, params=p))[0]

  value = jax.jit(objective)(params)
  assert np.isfinite(value) and float(value) > 0.0
  check_grads(jax.jit(objective), (params,), order=1, modes=['rev'])
