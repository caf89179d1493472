"""Dense autoencoder: shapes, aux layout, tied weights, by-hand forward, config validation; the
decoder mirrored (the default, as before) or given (`mirror=False`, `decoder`,
`decoder_activation`), and everything that reads the layers back following it."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from aelab import models, preprocessing
from aelab.analysis import runs
from aelab.config import defaults, overrides
from aelab.errors import AelabError
from aelab.trainer.forward import Forward
from aelab.models import activations, dense

pytestmark = pytest.mark.quick  # the fast tier: python -m pytest -m quick


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
    ('hidden', (), 'model.hidden = (); give at least one hidden width'),
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
  with pytest.raises(AelabError, match="unknown model 'mlp'; valid choices: classifier, conv, dense"):
    defaults.model('mlp')


# --- the decoder, mirrored or given ----------------------------------------------------------

_NP = {'tanh': np.tanh, 'sigmoid': lambda z: 1 / (1 + np.exp(-z)), 'linear': lambda z: z,
       'relu': lambda z: np.maximum(z, 0)}


def _by_hand(p, x, names, acts):
  """numpy: act(h @ kernel + bias) layer after layer; every activation in order."""
  h, hs = np.asarray(x, np.float64).reshape(len(x), -1), []
  for name, act in zip(names, acts):
    h = _NP[act](h @ p[name]['kernel'] + p[name]['bias'])
    hs.append(h)
  return hs


# (fields, feature shape, widths of encoder_1..K then decoder_1..M, activations in order)
EXPLICIT = {
    'h2o': (dict(hidden=(25, 10), activation='tanh', output_activation='tanh', mirror=False),
            (30,), (25, 10, 30), ('tanh',) * 3),
    'user': (dict(hidden=(4,), activation='sigmoid', output_activation='linear', mirror=False,
                  decoder=(7,), decoder_activation='sigmoid'),
             (7,), (4, 7, 7), ('sigmoid', 'sigmoid', 'linear')),
    'deeper': (dict(hidden=(6, 3), activation='tanh', output_activation='sigmoid', mirror=False,
                    decoder=(5, 8), decoder_activation='relu,tanh'),
               (4, 2, 1), (6, 3, 5, 8, 8), ('tanh', 'tanh', 'relu', 'tanh', 'sigmoid')),
    'default_activation': (dict(hidden=(5,), activation='tanh', mirror=False, decoder=(3, 2)),
                           (6,), (5, 3, 2, 6), ('tanh', 'tanh', 'tanh', 'sigmoid')),
}


@pytest.mark.parametrize('case', list(EXPLICIT))
def test_explicit_decoder_layers_and_output_equal_numpy_by_hand(case):
  fields, shape, widths, acts = EXPLICIT[case]
  cfg = defaults.model('dense', **fields)
  model, params, x = _init(cfg, shape)
  k = len(fields['hidden'])
  names = [f'encoder_{i + 1}' for i in range(k)] + [
      f'decoder_{i + 1}' for i in range(len(widths) - k)]
  ins = (int(np.prod(shape)), *widths[:-1])
  assert jax.tree.map(np.shape, params) == {
      n: {'kernel': (a, b), 'bias': (b,)} for n, a, b in zip(names, ins, widths)}
  recon, aux = model.apply({'params': params}, x)
  hs = _by_hand(jax.tree.map(np.asarray, params), x, names, acts)
  for got, want in zip((*aux['encoder'], *aux['decoder']), hs[:-1]):
    np.testing.assert_allclose(got, want, atol=1e-6)
  assert len(aux['encoder']) == k and len(aux['decoder']) == len(widths) - k - 1
  np.testing.assert_allclose(aux['code'], hs[k - 1], atol=1e-6)
  np.testing.assert_allclose(recon, hs[-1].reshape(x.shape), atol=1e-5)
  assert recon.shape == x.shape and aux['logits'].shape == x.shape
  code = model.apply({'params': params}, x, method=model.encode)
  np.testing.assert_allclose(model.apply({'params': params}, code, shape, method=model.decode),
                             recon, atol=1e-6)
  assert model.layer_activations() == {
      **{str(i + 1): a for i, a in enumerate(acts[:k])}, 'code': acts[k - 1]}


@pytest.mark.parametrize('fields,message', [
    (dict(decoder=(8, 0)), 'model.decoder[1] = 0; it must be an integer >= 1'),
    (dict(decoder=(8, 4), decoder_activation='tanh,relu,tanh'),
     "model.decoder_activation 'tanh,relu,tanh' names 3 layers but model.decoder = (8, 4) has 2"),
    (dict(decoder=(), decoder_activation='tanh,relu'),
     "model.decoder_activation 'tanh,relu' names 2 layers but model.decoder = () has 0"),
    (dict(decoder=(8,), decoder_activation='swishy'), "unknown activation 'swishy'"),
    (dict(decoder=(8,), activation='tanh,sigmoid'),
     "model.decoder_activation is '' (the encoder's activation) but model.activation = "
     "'tanh,sigmoid' differs by layer"),
    (dict(tied=True), 'model.tied needs the mirrored decoder (model.mirror=True)'),
    (dict(tied=True, decoder=(8,)), 'model.tied needs the mirrored decoder (model.mirror=True)'),
])
def test_bad_explicit_decoder_is_a_one_line_error(fields, message):
  cfg = defaults.model('dense', hidden=(8, 4), mirror=False)
  cfg.update(fields)
  for check in (lambda: models.build(cfg, (10,)), ):
    with pytest.raises(AelabError) as e:
      check()
    assert message in str(e.value) and '\n' not in str(e.value)


def test_decoder_fields_override_from_the_command_line_with_their_types():
  cfg = ml_collections.ConfigDict({'model': defaults.model('dense', hidden=(25, 10))})
  overrides.apply_args(cfg, [('model.mirror', 'false'), ('model.decoder', '(30,)'),
                             ('model.decoder_activation', 'sigmoid')])
  assert (cfg.model.mirror, cfg.model.decoder, cfg.model.decoder_activation) == (
      False, (30,), 'sigmoid')
  overrides.apply_args(cfg, [('model.decoder', '()')])
  assert cfg.model.decoder == ()
  with pytest.raises(AelabError, match=r"--config.model.mirror='maybe': model.mirror is a bool"):
    overrides.apply_args(cfg, [('model.mirror', 'maybe')])


class _TodaysMirror(nn.Module):
  """The dense model as it was before the decoder could be given (its setup and forward pass,
  written out): the reference for `mirror=True`."""
  features: int
  hidden: tuple
  activation: tuple
  output_activation: str
  tied: bool

  def setup(self):
    self.enc = [nn.Dense(h, name=f'encoder_{i + 1}') for i, h in enumerate(self.hidden)]
    widths = list(reversed(self.hidden[:-1])) + [self.features]
    layer = dense.TiedDense if self.tied else nn.Dense
    self.dec = [layer(w, name=f'decoder_{i + 1}') for i, w in enumerate(widths)]

  def __call__(self, x):
    h = x.reshape(x.shape[0], -1)
    for layer, act in zip(self.enc, self.activation):
      h = activations.get(act)(layer(h))
    acts = list(reversed(self.activation[:-1])) + [self.output_activation]
    for i, (layer, act) in enumerate(zip(self.dec, acts)):
      kernel = self.enc[len(self.hidden) - 1 - i].variables['params']['kernel']
      h = activations.get(act)(layer(h, kernel) if self.tied else layer(h))
    return h.reshape(x.shape)


@pytest.mark.parametrize('fields,shape', [
    (dict(hidden=(6, 3), activation='tanh,sigmoid', output_activation='linear'), (4, 2, 1)),
    (dict(hidden=(25, 10), activation='tanh', output_activation='tanh'), (30,)),
    (dict(hidden=(7,)), (9,)),
    (dict(hidden=(5, 3), tied=True), (8,)),
    (dict(hidden=(8, 6, 2), activation='relu,tanh,linear', decoder=(3,), decoder_activation='elu'),
     (12,)),  # mirror=True: decoder and decoder_activation are ignored
])
def test_mirror_is_todays_model_parameter_for_parameter(fields, shape):
  cfg = defaults.model('dense', **fields)
  model, params, x = _init(cfg, shape)
  ref = _TodaysMirror(int(np.prod(shape)), tuple(cfg.hidden),
                      activations.per_layer(cfg.activation, len(cfg.hidden)),
                      cfg.output_activation, cfg.tied)
  ref_params = ref.init(jax.random.PRNGKey(0), x)['params']
  assert jax.tree.structure(params) == jax.tree.structure(ref_params)
  jax.tree.map(np.testing.assert_array_equal, params, ref_params)  # the same initial values
  np.testing.assert_array_equal(model.apply({'params': params}, x)[0],
                                ref.apply({'params': ref_params}, x))
  # A config saved before these fields existed (an older run's config.json) builds the same.
  old = ml_collections.ConfigDict({k: v for k, v in cfg.items()
                                   if k not in ('mirror', 'decoder', 'decoder_activation')})
  _, old_params, _ = _init(old, shape)
  jax.tree.map(np.testing.assert_array_equal, params, old_params)


def _run(cfg, shape, params):
  return runs.Run(workdir=None, step=0, config=ml_collections.ConfigDict({'model': cfg}),
                  forward=Forward(models.build(cfg, shape), loss_fn=None),
                  params=jax.tree.map(np.asarray, params),
                  prep=preprocessing.Preprocessor(mode='none'), feature_shape=shape,
                  feature_names=None, meta={})


@pytest.mark.parametrize('fields,shape,outs', [
    (EXPLICIT['h2o'][0], (30,), ['h1', 'h2', 'z_hat']),
    (EXPLICIT['deeper'][0], (4, 2, 1), ['h1', 'h2', 'd1', 'd2', 'z_hat']),
    (dict(hidden=(6, 3), activation='tanh'), (8,), ['h1', 'h2', 'd1', 'z_hat']),
    (dict(hidden=(5, 3), tied=True, activation='linear'), (8,), ['h1', 'h2', 'd1', 'z_hat']),
])
def test_layers_and_formula_follow_the_decoder(fields, shape, outs):
  """The model's layers (its weights export) in forward order reproduce it in numpy."""
  cfg = defaults.model('dense', **fields)
  model, params, x = _init(cfg, shape)
  net = model.layers(jax.tree.map(np.asarray, params))
  assert [layer.name for layer in net] == [
      f'encoder_{i + 1}' for i in range(len(cfg.hidden))] + [
      f'decoder_{i + 1}' for i in range(len(net) - len(cfg.hidden))]
  h = np.asarray(x, np.float64).reshape(len(x), -1)
  for layer in net:
    h = _NP[layer.activation](h @ layer.kernel + layer.bias)
  np.testing.assert_allclose(h.reshape(x.shape), model.apply({'params': params}, x)[0], atol=1e-5)
  lines = runs.formula(_run(cfg, shape, params))[1:-1]
  assert [line.split(' = ')[0] for line in lines] == outs
  assert lines[len(cfg.hidden) - 1].endswith('(the code)')
  assert lines[-1].endswith(f'[{net[-1].kernel.shape[0]} -> {int(np.prod(shape))}]')


def test_filters_are_the_first_encoder_layer_whatever_the_decoder():
  cfg = defaults.model('dense', hidden=(6, 3), mirror=False, decoder=(5,))
  _, params, _ = _init(cfg, (4, 2, 1))
  images = models.build(cfg, (4, 2, 1)).filters(params)
  assert images.shape == (6, 4, 2, 1)
  np.testing.assert_array_equal(images[2].reshape(-1), params['encoder_1']['kernel'][:, 2])
  assert models.build(cfg, (8,)).filters(params) is None
