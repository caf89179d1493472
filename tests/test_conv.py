"""Convolutional AE and VAE body: exact input shapes back for any H x W x C, filters, config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import models
from aelab.config import defaults
from aelab.errors import AelabError
from aelab.models import conv

KEY = jax.random.PRNGKey(0)


@pytest.mark.parametrize('shape,channels', [
    ((20, 12, 3), (4, 6)),       # non-square RGB
    ((7, 5, 2), (3, 3, 5)),      # odd sizes: 7 -> 4 -> 2 -> 1, 5 -> 3 -> 2 -> 1
    ((28, 28, 1), (8, 16)),
    ((1, 9, 1), (2,)),           # a single row
])
def test_conv_ae_returns_exactly_the_input_shape(shape, channels):
  model = models.build(defaults.model('conv', channels=channels, latent=5), shape)
  x = jax.ShapeDtypeStruct((3, *shape), jnp.float32)
  params = jax.eval_shape(model.init, KEY, x)['params']   # shapes only: nothing is compiled
  recon, aux = jax.eval_shape(lambda p, v: model.apply({'params': p}, v), params, x)
  assert recon.shape == x.shape and aux['logits'].shape == x.shape
  assert aux['code'].shape == (3, 5)
  hs, ws = conv.spatial_sizes(shape[0], len(channels)), conv.spatial_sizes(shape[1], len(channels))
  assert [m.shape for m in aux['encoder'][:-1]] == [
      (3, hs[i + 1], ws[i + 1], c) for i, c in enumerate(channels)]
  assert [m.shape[1:3] for m in aux['decoder']] == [
      (hs[i], ws[i]) for i in range(len(channels) - 1, 0, -1)]
  assert params['encoder']['conv_1']['kernel'].shape == (3, 3, shape[2], channels[0])


def test_conv_ae_encode_decode_and_filters_agree_with_call():
  shape, cfg = (20, 12, 3), defaults.model('conv', channels=(4, 6), latent=5)
  model = models.build(cfg, shape)
  x = jax.random.uniform(KEY, (3, *shape))
  params = jax.jit(model.init)(KEY, x)['params']

  @jax.jit
  def run(p, v):  # one compiled call: the forward pass, encode, and decode of the code
    recon, aux = model.apply({'params': p}, v)
    code = model.apply({'params': p}, v, method=model.encode)
    return recon, aux, code, model.apply({'params': p}, code, method=model.decode)

  recon, aux, code, decoded = run(params, x)
  assert recon.shape == x.shape
  np.testing.assert_allclose(recon, jax.nn.sigmoid(aux['logits']), rtol=1e-6)
  np.testing.assert_allclose(code, aux['code'], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(decoded, recon, rtol=1e-5, atol=1e-6)
  filters = models.build(cfg, shape).filters(params)
  assert filters.shape == (4, 3, 3, 3)
  np.testing.assert_array_equal(filters[1], np.asarray(params['encoder']['conv_1']['kernel'])[..., 1])


def test_conv_vae_on_non_square_images():
  cfg = defaults.model('vae', body='conv', channels=(4, 8), latent=3, activation='relu')
  model = models.build(cfg, (20, 12, 3))
  x = jax.random.uniform(KEY, (2, 20, 12, 3))
  params = jax.jit(model.init)({'params': KEY, 'noise': KEY}, x)['params']

  @jax.jit
  def run(p, v):
    recon, aux = model.apply({'params': p}, v, rngs={'noise': KEY})
    lw = model.apply({'params': p}, v, 7, method=model.log_weights, rngs={'noise': KEY})
    return recon, aux, lw, model.apply({'params': p}, aux['z'], method=model.decode)

  recon, aux, lw, decoded = run(params, x)
  assert recon.shape == x.shape and aux['z'].shape == (2, 3) and aux['logvar'].shape == (2, 3)
  assert lw.shape == (2, 7) and bool(jnp.all(jnp.isfinite(lw)))
  assert decoded.shape == x.shape
  assert models.build(cfg, (20, 12, 3)).filters(params).shape == (4, 3, 3, 3)


def test_dense_filters_are_first_layer_columns_as_images():
  cfg = defaults.model('dense', hidden=(6, 2))
  model = models.build(cfg, (4, 3, 1))
  params = model.init(KEY, jnp.zeros((1, 4, 3, 1)))['params']
  f = np.asarray(models.build(cfg, (4, 3, 1)).filters(params))
  assert f.shape == (6, 4, 3, 1)
  np.testing.assert_array_equal(f[2].reshape(-1), np.asarray(params['encoder_1']['kernel'])[:, 2])
  assert models.build(cfg, (12,)).filters(params) is None


@pytest.mark.parametrize('field,value,message', [
    ('channels', (), 'model.channels = ()'),
    ('channels', (8, 0), 'model.channels = (8, 0)'),
    ('latent', -1, 'model.latent = -1'),
    ('activation', 'swish!', "unknown activation 'swish!'"),
])
def test_bad_conv_config_is_a_clear_error(field, value, message):
  cfg = defaults.model('conv')
  cfg[field] = value
  with pytest.raises(AelabError) as err:
    models.build(cfg, (28, 28, 1))
  assert message in str(err.value)


def test_conv_needs_images():
  with pytest.raises(AelabError, match=r'needs image data \[H, W, C\].*\(30,\)'):
    models.build(defaults.model('conv'), (30,))
