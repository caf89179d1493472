"""Dense (fully connected) autoencoder: encoder layers, mirrored decoder, optional tied weights."""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from aelab.config.defaults import MODELS
from aelab.errors import AelabError
from aelab.models import activations

DEFAULTS = MODELS['dense']  # the fields of config.model (aelab/config/defaults.py)


class TiedDense(nn.Module):
  """x @ kernel.T + bias with a kernel borrowed from an encoder layer; only the bias is owned."""
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))
    return x @ kernel.T + bias


class DenseAE(nn.Module):
  """x [B, *shape] -> flattened -> encoder_1..encoder_K (code) -> decoder_1..decoder_K -> x_hat.

  Every layer computes act(h @ kernel + bias); kernels are [in, out]. `__call__` returns
  (recon, aux): recon after the output activation, aux = {'encoder': (h_1, ..., h_K), 'code':
  h_K, 'decoder': decoder hidden activations, 'logits': output before its activation}.
  """
  features: int
  hidden: Sequence[int]
  activation: Sequence[str]
  output_activation: str = 'sigmoid'
  tied: bool = False

  def setup(self):
    self.encoder_layers = [nn.Dense(h, name=f'encoder_{i + 1}') for i, h in enumerate(self.hidden)]
    widths = list(reversed(self.hidden[:-1])) + [self.features]
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
    acts = list(reversed(self.activation[:-1]))
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
  hidden = tuple(cfg.hidden)
  if not hidden:
    raise AelabError('model.hidden is empty; give at least one hidden width, e.g. (256, 64)')
  for i, h in enumerate(hidden):
    if not isinstance(h, int) or isinstance(h, bool) or h <= 0:
      raise AelabError(f'model.hidden[{i}] = {h!r}; every hidden width must be a positive integer '
                       f'(model.hidden = {hidden})')
  activations.get(cfg.output_activation)
  return DenseAE(features=math.prod(feature_shape), hidden=hidden,
                 activation=activations.per_layer(cfg.activation, len(hidden)),
                 output_activation=cfg.output_activation, tied=bool(cfg.tied))


def layer_activations(cfg: ml_collections.ConfigDict) -> dict[str, str]:
  """Encoder layer name ('1'..'K' and 'code') -> activation name, for loss-term checks."""
  names = activations.per_layer(cfg.activation, len(cfg.hidden))
  out = {str(i + 1): a for i, a in enumerate(names)}
  out['code'] = names[-1]
  return out


def filters(params, feature_shape: Sequence[int]):
  """The first encoder layer's weights as images [n, *feature_shape] (None for non-image data)."""
  if len(feature_shape) != 3:
    return None
  kernel = jnp.asarray(params['encoder_1']['kernel'])
  return kernel.T.reshape(kernel.shape[1], *feature_shape)
