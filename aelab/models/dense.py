"""Dense (fully connected) autoencoder: encoder layers, a mirrored or given decoder, optional tied
weights.

    defaults.model('dense', hidden=(25, 10))               # 30 -> 25 -> 10 -> 25 -> 30 (mirror)
    defaults.model('dense', hidden=(25, 10), mirror=False)  # 30 -> 25 -> 10 -> 30 (H2O's)
    defaults.model('dense', hidden=(k,), mirror=False, decoder=(n,), decoder_activation='sigmoid',
                   activation='sigmoid', output_activation='linear')   # n -> k -> n -> n

`resolve(cfg)` turns the config into the layers (`Shape`), checked; everything that reads a
dense model's layers (the model, the loss-term checks, aelab/analysis, the keras reference) goes
through it. Parameters: encoder_1..K, decoder_1..M (decoder_M is the output layer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from aelab.config.defaults import MODELS
from aelab.errors import AelabError
from aelab.models import activations

DEFAULTS = MODELS['dense']  # the fields of config.model (aelab/config/defaults.py)


class Shape(NamedTuple):
  """A dense model's layers resolved from its config: encoder widths and activations (the last
  is the code), the decoder's hidden widths and activations, then the output layer (as wide as
  the data, `output_activation`)."""
  hidden: tuple[int, ...]
  activation: tuple[str, ...]
  decoder: tuple[int, ...]
  decoder_activation: tuple[str, ...]
  output_activation: str
  tied: bool


def _field(cfg: Any, name: str) -> Any:
  """cfg[name], or its default for a config saved before the field existed (an older run)."""
  return cfg.get(name, DEFAULTS[name])


def _widths(value: Any, field: str, what: str) -> tuple[int, ...]:
  widths = tuple(value)
  for i, w in enumerate(widths):
    if not isinstance(w, int) or isinstance(w, bool) or w <= 0:
      raise AelabError(f'model.{field}[{i}] = {w!r}; every {what} width must be a positive '
                       f'integer (model.{field} = {widths})')
  return widths


def resolve(cfg: Any) -> Shape:
  """The layers of config.model (a ConfigDict or dict); one-line AelabErrors naming the field."""
  hidden = _widths(cfg['hidden'], 'hidden', 'hidden')
  if not hidden:
    raise AelabError('model.hidden is empty; give at least one hidden width, e.g. (256, 64)')
  acts = activations.per_layer(cfg['activation'], len(hidden))
  activations.get(cfg['output_activation'])
  tied = bool(cfg['tied'])
  if _field(cfg, 'mirror'):
    return Shape(hidden, acts, tuple(reversed(hidden[:-1])), tuple(reversed(acts[:-1])),
                 cfg['output_activation'], tied)
  if tied:
    raise AelabError('model.tied needs the mirrored decoder (model.mirror=True): a tied decoder '
                     "layer uses its encoder layer's kernel transposed; set model.tied=False")
  decoder = _widths(_field(cfg, 'decoder'), 'decoder', 'decoder')
  spec = _field(cfg, 'decoder_activation')
  if not spec.strip():  # the encoder's activation
    if decoder and len(set(acts)) > 1:
      raise AelabError(f"model.decoder_activation is '' (the encoder's activation) but "
                       f"model.activation = {cfg['activation']!r} differs by layer; name the "
                       f'decoder layers\' activation(s), e.g. {acts[0]!r}')
    spec = acts[0]
  dec_acts = activations.per_layer(spec, len(decoder), 'model.decoder_activation',
                                   f'model.decoder = {decoder} has')
  return Shape(hidden, acts, decoder, dec_acts, cfg['output_activation'], tied)


class TiedDense(nn.Module):
  """x @ kernel.T + bias with a kernel borrowed from an encoder layer; only the bias is owned."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    return x @ kernel.T + bias


class DenseAE(nn.Module):
  """x [B, *shape] -> flattened -> encoder_1..encoder_K (code) -> decoder_1..decoder_M -> x_hat.

  Every layer computes act(h @ kernel + bias); kernels are [in, out]. The decoder's hidden layers
  are `decoder` wide with `decoder_activation` (None: the encoder mirrored), then decoder_M, the
  output layer. `__call__` returns (recon, aux): recon after the output activation, aux =
  {'encoder': (h_1, ..., h_K), 'code': h_K, 'decoder': decoder hidden activations, 'logits':
  output before its activation}.
  """
  features: int
  hidden: Sequence[int]
  activation: Sequence[str]
  output_activation: str = 'sigmoid'
  tied: bool = False
  decoder: Sequence[int] | None = None
  decoder_activation: Sequence[str] | None = None

  def _decoder(self) -> tuple[tuple[int, ...], tuple[str, ...]]:
    if self.decoder is None:
      return tuple(reversed(self.hidden[:-1])), tuple(reversed(self.activation[:-1]))
    return tuple(self.decoder), tuple(self.decoder_activation or ())

  def setup(self):
    self.encoder_layers = [nn.Dense(h, name=f'encoder_{i + 1}') for i, h in enumerate(self.hidden)]
    hidden, _ = self._decoder()
    if self.tied and hidden != tuple(reversed(self.hidden[:-1])):
      raise AelabError('model.tied needs the mirrored decoder (model.mirror=True)')
    widths = list(hidden) + [self.features]
    layer = TiedDense if self.tied else nn.Dense
    self.decoder_layers = [layer(w, name=f'decoder_{i + 1}') for i, w in enumerate(widths)]

  def _encode_all(self, x: jax.Array) -> tuple[jax.Array, ...]:
    h = x.reshape(x.shape[0], -1)
    hs = []
    for layer, act in zip(self.encoder_layers, self.activation):
      h = activations.get(act)(layer(h))
      hs.append(h)
    return tuple(hs)

  def _decode_all(self, code: jax.Array) -> tuple[tuple[jax.Array, ...], jax.Array]:
    _, acts = self._decoder()
    h, hs = code, []
    for i, layer in enumerate(self.decoder_layers):
      if self.tied:
        z = layer(h, self.encoder_layers[len(self.hidden) - 1 - i].variables['params']['kernel'])
      else:
        z = layer(h)
      if i < len(acts):
        h = activations.get(acts[i])(z)
        hs.append(h)
    return tuple(hs), z

  def encode(self, x: jax.Array) -> jax.Array:
    return self._encode_all(x)[-1]

  def decode(self, code: jax.Array, shape: Sequence[int] | None = None) -> jax.Array:
    _, logits = self._decode_all(code)
    return activations.get(self.output_activation)(logits).reshape(
        (code.shape[0], *(shape or (self.features,))))

  def __call__(self, x: jax.Array, *, train: bool = False):
    del train  # no dropout / batch norm in this model
    enc = self._encode_all(x)
    dec, logits = self._decode_all(enc[-1])
    # The output activation on flat [B, D] logits, then reshaped: XLA:CPU runs element-wise ops
    # on an [B, H, W, 1] image several times slower.
    recon = activations.get(self.output_activation)(logits).reshape(x.shape)
    return recon, {'encoder': enc, 'code': enc[-1], 'decoder': dec,
                   'logits': logits.reshape(x.shape)}


def build(cfg: ml_collections.ConfigDict, feature_shape: Sequence[int]) -> DenseAE:
  s = resolve(cfg)
  return DenseAE(features=math.prod(feature_shape), hidden=s.hidden, activation=s.activation,
                 output_activation=s.output_activation, tied=s.tied, decoder=s.decoder,
                 decoder_activation=s.decoder_activation)


def layer_activations(cfg: ml_collections.ConfigDict) -> dict[str, str]:
  """Encoder layer name ('1'..'K' and 'code') -> activation name, for loss-term checks (the
  terms address encoder layers only, whatever the decoder)."""
  names = resolve(cfg).activation
  out = {str(i + 1): a for i, a in enumerate(names)}
  out['code'] = names[-1]
  return out


def filters(params, feature_shape: Sequence[int]):
  """The first encoder layer's weights as images [n, *feature_shape] (None for non-image data);
  encoder_1 whatever the decoder (mirrored, given or tied)."""
  if len(feature_shape) != 3:
    return None
  kernel = jnp.asarray(params['encoder_1']['kernel'])
  return kernel.T.reshape(kernel.shape[1], *feature_shape)
