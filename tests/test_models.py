"""Dense autoencoder: shapes, aux layout, tied weights, by-hand forward, config validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import models
from aelab.config import defaults
from aelab.errors import AelabError


def _init(cfg, shape, batch=5):
  model = models.build(cfg, shape)
  x = jax.random.uniform(jax.random.PRNGKey(1), (batch, *shape))
  params = model.init(jax.random.PRNGKey(0), x)['params']
  return model, params, x


def test_forward_matches_numpy_by_hand():
  cfg = defaults.model('dense', hidden=(6, 3), activation='tanh,sigmoid', output_activation='linear')
  model, params, x = _init(cfg, (4, 2, 1))
  recon, aux = model.apply({'params': params}, x)
  p = jax.tree.map(np.asarray, params)
  h = np.asarray(x).reshape(5, -1)
  h1 = np.tanh(h @ p['encoder_1']['kernel'] + p['encoder_1']['bias'])
  h2 = 1 / (1 + np.exp(-(h1 @ p['encoder_2']['kernel'] + p['encoder_2']['bias'])))
  d1 = np.tanh(h2 @ p['decoder_1']['kernel'] + p['decoder_1']['bias'])  # mirrored activation
  out = d1 @ p['decoder_2']['kernel'] + p['decoder_2']['bias']
  np.testing.assert_allclose(aux['encoder'][0], h1, atol=1e-6)
  np.testing.assert_allclose(aux['code'], h2, atol=1e-6)
  np.testing.assert_allclose(aux['decoder'][0], d1, atol=1e-6)
  np.testing.assert_allclose(recon, out.reshape(x.shape), atol=1e-5)
  assert recon.shape == x.shape and aux['logits'].shape == x.shape


def test_encode_decode_agree_with_call():
  cfg = defaults.model('dense', hidden=(7, 2))
  model, params, x = _init(cfg, (9,))
  recon, aux = model.apply({'params': params}, x)
  code = model.apply({'params': params}, x, method=model.encode)
  np.testing.assert_allclose(code, aux['code'], atol=1e-6)
  np.testing.assert_allclose(model.apply({'params': params}, code, method=model.decode), recon,
                             atol=1e-6)


def test_tied_weights_share_the_encoder_kernels():
  cfg = defaults.model('dense', hidden=(5, 3), activation='linear', output_activation='linear',
                        tied=True)
  model, params, x = _init(cfg, (8,))
  assert set(params['decoder_1']) == {'bias'} and set(params['decoder_2']) == {'bias'}
  recon, _ = model.apply({'params': params}, x)
  k1, k2 = params['encoder_1']['kernel'], params['encoder_2']['kernel']
  b = lambda name: params[name]['bias']  # noqa: E731
  h = (x @ k1 + b('encoder_1')) @ k2 + b('encoder_2')
  expected = (h @ k2.T + b('decoder_1')) @ k1.T + b('decoder_2')
  np.testing.assert_allclose(recon, expected, atol=1e-5)
  grads = jax.grad(lambda p: jnp.sum(model.apply({'params': p}, x)[0] ** 2))(params)
  assert float(jnp.abs(grads['encoder_1']['kernel']).sum()) > 0


@pytest.mark.parametrize('field,value,message', [
    ('hidden', (64, 0), 'model.hidden[1] = 0'),
    ('hidden', (), 'model.hidden is empty'),
    ('activation', 'swishy', "unknown activation 'swishy'"),
    ('activation', 'tanh,tanh,tanh', 'names 3 layers but the encoder has 2'),
    ('output_activation', 'nope', "unknown activation 'nope'"),
])
def test_bad_model_config_is_a_clear_error(field, value, message):
  cfg = defaults.model('dense', hidden=(8, 4))
  cfg[field] = value
  with pytest.raises(AelabError, match=None) as e:
    models.build(cfg, (10,))
  assert message in str(e.value)


def test_unknown_model_name_lists_choices():
  with pytest.raises(AelabError, match="unknown model 'mlp'; valid choices: dense"):
    defaults.model('mlp')
