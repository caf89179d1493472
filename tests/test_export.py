"""Every model kind exports its arrays and the computation by hand (base.Model.export); for the
dense kinds (dense, the VAE's encoder mean and decoder, classifier, SAE) numpy on the exported
arrays reproduces the model to 1e-5; `python -m aelab.inspect weights` writes them for every kind."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import models
from aelab.config import defaults

pytestmark = pytest.mark.quick

NP = {'linear': lambda h: h, 'tanh': np.tanh, 'relu': lambda h: np.maximum(h, 0),
      'sigmoid': lambda h: 1 / (1 + np.exp(-h)),
      'softmax': lambda h: np.exp(h - h.max(1, keepdims=True))
      / np.exp(h - h.max(1, keepdims=True)).sum(1, keepdims=True)}


def _init(cfg, shape, seed=0):
  model = models.build(cfg, shape)
  x = jax.random.uniform(jax.random.PRNGKey(seed + 1), (7, *shape))
  params = jax.device_get(model.init(jax.random.PRNGKey(seed), x)['params'])
  # Nonzero biases, so that a bias read from the wrong array shows.
  params = jax.tree.map(lambda a: a + 0.05 * np.sin(np.arange(a.size).reshape(a.shape)), params)
  return model, params, np.asarray(x)


def _by_hand(export, z):
  """The exported dense layers, in their order, applied in float64."""
  h = np.asarray(z, np.float64).reshape(len(z), -1)
  for name, act in zip(export.extras['layers'], export.extras['activations']):
    h = NP[str(act)](h @ export.arrays[f'{name}/kernel'] + export.arrays[f'{name}/bias'])
  return h


@pytest.mark.parametrize('fields', [
    dict(hidden=(9, 4), activation='tanh', output_activation='sigmoid'),
    dict(hidden=(9, 4), activation='relu,tanh', mirror=False, decoder=(6,),
         decoder_activation='sigmoid', output_activation='linear'),
    dict(hidden=(9, 4), activation='linear', tied=True),
])
def test_dense(fields):
  model, params, x = _init(defaults.model('dense', **fields), (12,))
  out = model.export(params, {})
  want = model.apply({'params': params}, jnp.asarray(x))[0]
  np.testing.assert_allclose(_by_hand(out, x), want, atol=1e-5)
  assert [s.line.split(' = ')[0] for s in out.steps][-1] == 'z_hat'
  assert any('code' in s.layers for s in out.steps)


def test_classifier():
  model, params, x = _init(defaults.model('classifier', hidden=(9,), classes=3), (12,))
  out = model.export(params, {})
  np.testing.assert_allclose(_by_hand(out, x), model.apply({'params': params}, x)[0], atol=1e-5)
  assert list(out.extras['layers'])[-1] == 'head' and out.steps[-1].line.startswith('predicted')


def test_vae_encoder_mean_and_decoder_at_the_mean():
  cfg = defaults.model('vae', hidden=(9, 6), latent=3, activation='tanh')
  model, params, x = _init(cfg, (12,))
  out = model.export(params, {})
  names = list(out.extras['layers'])
  assert names.index('mean') == 2 and 'logvar/kernel' in out.arrays
  first = out._replace(extras={k: v[:3] for k, v in out.extras.items()})
  mean = model.apply({'params': params}, x, method=model.encode)
  np.testing.assert_allclose(_by_hand(first, x), mean, atol=1e-5)
  decoded = model.apply({'params': params}, mean, method=model.decode)
  np.testing.assert_allclose(_by_hand(out, x), np.asarray(decoded).reshape(len(x), -1), atol=1e-5)
  logvar = np.tanh(np.tanh(x @ out.arrays['encoder_1/kernel'] + out.arrays['encoder_1/bias'])
                   @ out.arrays['encoder_2/kernel'] + out.arrays['encoder_2/bias'])
  posterior = model.apply({'params': params}, x, method=lambda m, v: m._posterior(v))
  np.testing.assert_allclose(logvar @ out.arrays['logvar/kernel'] + out.arrays['logvar/bias'],
                             posterior[2], atol=1e-5)


def _sae_by_hand(a, z, activation, k):
  pre = (np.asarray(z, np.float64) - a['b_dec']) @ a['W_enc'] + a['b_enc']
  if activation == 'relu':
    f = np.maximum(pre, 0)
  elif activation == 'jumprelu':
    f = pre * (pre > a['threshold'])
  elif 'batchtopk_threshold' in a:
    f = np.where(pre > a['batchtopk_threshold'], np.maximum(pre, 0), 0)
  else:
    kth = np.sort(pre, axis=1)[:, -k][:, None]
    f = np.where(pre >= kth, np.maximum(pre, 0), 0)
  return f, f @ a['W_dec'] + a['b_dec']


@pytest.mark.parametrize('activation', ['topk', 'batchtopk', 'jumprelu', 'relu'])
def test_sae(activation):
  cfg = defaults.model('sae', latents=16, k=3, activation=activation, jumprelu_threshold=0.05)
  model, params, x = _init(cfg, (6,))
  stats = {'threshold': np.float32(0.1), 'since_fired': np.zeros(16, np.int32)} \
      if activation == 'batchtopk' else {}
  out = model.export(params, stats)
  recon, aux = model.apply({'params': params}, x, stats=stats or None)
  f, z_hat = _sae_by_hand(out.arrays, x, activation, cfg.k)
  np.testing.assert_allclose(f, aux['code'], atol=1e-5)
  np.testing.assert_allclose(z_hat, recon, atol=1e-5)
  assert ('batchtopk_threshold' in out.arrays) == (activation == 'batchtopk')
  assert [s.line[:3] for s in out.steps] == ['pre', 'f =', 'z_h']


@pytest.mark.parametrize('name,fields', [('conv', dict(channels=(4,), latent=5)),
                                         ('vae', dict(body='conv', channels=(4,), latent=3))])
def test_conv_kinds_export_every_array_and_say_what_each_holds(name, fields):
  model, params, _ = _init(defaults.model(name, **fields), (8, 8, 1))
  out = model.export(params, {})
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  assert len(out.arrays) == len(leaves) and set(out.about) == set(out.arrays)
  assert any('conv2d' in s.line for s in out.steps) and any('code' in s.layers for s in out.steps)
  kernel = next(v for k, v in out.arrays.items() if k.endswith('/conv_1/kernel'))
  assert kernel.shape == (3, 3, 1, 4) and 'in channels' in ' '.join(out.about[
      next(k for k in out.arrays if k.endswith('/conv_1/kernel'))])


@pytest.mark.parametrize('name,fields,shape', [
    ('dense', dict(hidden=(9, 5, 4), activation='tanh'), (12,)),
    ('classifier', dict(hidden=(9, 4), classes=3), (12,)),
    ('vae', dict(hidden=(9, 6), latent=3), (12,)),
    ('sae', dict(latents=16, k=3), (6,)),
    ('conv', dict(channels=(4,), latent=5), (8, 8, 1)),
])
def test_from_layer_continues_the_forward_pass(name, fields, shape):
  """The model continued from any of its layers' activations gives its own output (a VAE's at
  the posterior mean, without sampling): what splicing a layer builds on."""
  model, params, x = _init(defaults.model(name, **fields), shape)
  v = {'params': params}
  out, aux = model.apply(v, x, rngs={'noise': jax.random.PRNGKey(0)})
  if name == 'vae':
    out = model.apply(v, aux['mean'], method=model.decode)
  layers = [k for k in model.layer_activations() if not (name == 'conv' and k != 'code')]
  for layer in layers:
    h = aux['code'] if layer == 'code' else aux['encoder'][int(layer) - 1]
    got, _ = model.apply(v, h.reshape(len(h), -1), layer, method=model.from_layer)
    np.testing.assert_allclose(np.asarray(got).reshape(out.shape), out, atol=1e-5, err_msg=layer)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """Tiny VAE and conv runs: 20 steps, no evaluation but the checkpoint."""
  from conftest import experiment, train_on_test_data
  out = {}
  for name in ('vae_mnist', 'conv_ae_mnist'):
    config = experiment(name)
    config.train.update(num_steps=20, progress=False)
    config.evals = {}
    out[name] = tmp_path_factory.mktemp(name) / 'run'
    train_on_test_data(config, out[name])
  return out


@pytest.mark.parametrize('name', ['vae_mnist', 'conv_ae_mnist'])
def test_the_weights_verb_exports_every_kind(trained, name, tmp_path, capsys):
  """`python -m aelab.inspect weights` on a VAE and a conv model (it used to refuse both): every
  parameter, the header's recipe; the VAE's posterior mean recomputed from the file in numpy."""
  from aelab import inspect as inspect_cli
  from aelab.analysis import runs
  run = runs.load(trained[name])
  inspect_cli.run(['weights', f'--workdir={run.workdir}', f'--out={tmp_path / "w.npz"}'])
  assert f"wrote the '{run.config.model.name}' model" in capsys.readouterr().out
  with np.load(tmp_path / 'w.npz') as w:
    leaves = jax.tree_util.tree_flatten_with_path(run.params)[0]
    assert sum(1 for k in w.files if '/' in k or k == 'log_sigma') == len(leaves)
    header = str(w['header'])
    assert 'orientation:' in header and ('mean = ' in header or 'code = ' in header)
    if name == 'vae_mnist':
      x = run.dataset.test.x[:8]
      h = x.reshape(len(x), -1).astype(np.float64)
      for layer in ('encoder_1', 'encoder_2'):
        h = np.tanh(h @ w[f'{layer}/kernel'] + w[f'{layer}/bias'])
      mean = h @ w['mean/kernel'] + w['mean/bias']
      np.testing.assert_allclose(mean, runs.features(run, x, 'code'), atol=1e-5)
  inspect_cli.run(['weights', f'--workdir={run.workdir}', f'--out={tmp_path / "csv"}'])
  assert (tmp_path / 'csv' / 'model.txt').is_file() and len(list((tmp_path / 'csv').glob('*.csv'))) \
      == len(leaves) + 1  # one per array, and preprocessing.csv
