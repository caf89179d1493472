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

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from aelab.config import checks
from aelab.errors import AelabError
from aelab.models import activations, base

OPTIONS = dict(
    hidden=(256, 64),            # encoder widths; the last is the code
    activation='relu',           # one name, or one per encoder layer: 'tanh,sigmoid'
    output_activation='sigmoid',
    tied=False,                  # decoder kernels are the encoder kernels transposed
                                 # (needs mirror=True)
    mirror=True,                 # the decoder mirrors the encoder (widths hidden[-2::-1],
                                 # activations likewise); decoder and decoder_activation
                                 # are then ignored
    decoder=(),                  # mirror=False: the decoder's hidden widths, code to output;
                                 # () puts the output layer right after the code
    decoder_activation='',       # mirror=False: one name, or one per decoder hidden layer;
                                 # '' = the encoder's activation (one name)
)


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


def resolve(cfg: Any) -> Shape:
  """The layers of config.model (a ConfigDict or dict); one-line AelabErrors naming the field."""
  hidden = checks.widths(cfg['hidden'], 'model.hidden', 'hidden width',
                         empty='give at least one hidden width, e.g. (256, 64)')
  acts = activations.per_layer(cfg['activation'], len(hidden))
  activations.get(cfg['output_activation'])
  tied = bool(cfg['tied'])
  if cfg['mirror']:
    return Shape(hidden, acts, tuple(reversed(hidden[:-1])), tuple(reversed(acts[:-1])),
                 cfg['output_activation'], tied)
  if tied:
    raise AelabError('model.tied needs the mirrored decoder (model.mirror=True): a tied decoder '
                     "layer uses its encoder layer's kernel transposed; set model.tied=False")
  decoder = checks.widths(cfg['decoder'], 'model.decoder', 'decoder width')
  spec = cfg['decoder_activation']
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


def layer_index(layer: str, depth: int) -> int:
  """How many encoder layers compute feature layer `layer` ('1'..'K' or 'code' = K)."""
  return depth if layer == 'code' else int(layer)


class DenseAE(base.Model):
  """x [B, *shape] -> flattened -> encoder_1..encoder_K (code) -> decoder_1..decoder_M -> x_hat.

  Every layer computes act(h @ kernel + bias); kernels are [in, out]. The decoder's hidden layers
  are `decoder` wide with `decoder_activation`, then decoder_M, the output layer. `__call__`
  returns (recon, aux): recon after the output activation, aux = {'encoder': (h_1, ..., h_K),
  'code': h_K, 'decoder': decoder hidden activations, 'logits': output before its activation}.
  """
  shape: Shape

  def setup(self):
    s = self.shape
    self.encoder_layers = [nn.Dense(h, name=f'encoder_{i + 1}') for i, h in enumerate(s.hidden)]
    layer = TiedDense if s.tied else nn.Dense
    self.decoder_layers = [layer(w, name=f'decoder_{i + 1}')
                           for i, w in enumerate((*s.decoder, self.features))]

  def _encode_from(self, h: jax.Array, start: int) -> tuple[jax.Array, ...]:
    """Encoder layers start+1..K applied to h (layer `start`'s activations, 0: the input)."""
    hs = []
    for layer, act in list(zip(self.encoder_layers, self.shape.activation))[start:]:
      h = activations.get(act)(layer(h))
      hs.append(h)
    return tuple(hs)

  def _decode_all(self, code: jax.Array) -> tuple[tuple[jax.Array, ...], jax.Array]:
    acts, depth = self.shape.decoder_activation, len(self.shape.hidden)
    h, hs = code, []
    for i, layer in enumerate(self.decoder_layers):
      if self.shape.tied:
        z = layer(h, self.encoder_layers[depth - 1 - i].variables['params']['kernel'])
      else:
        z = layer(h)
      if i < len(acts):
        h = activations.get(acts[i])(z)
        hs.append(h)
    return tuple(hs), z

  def _output(self, logits: jax.Array, shape) -> jax.Array:
    # The output activation on flat [B, D] logits, then reshaped: XLA:CPU runs element-wise ops
    # on an [B, H, W, 1] image several times slower.
    return activations.get(self.shape.output_activation)(logits).reshape(shape)

  def encode(self, x: jax.Array) -> jax.Array:
    return self._encode_from(x.reshape(x.shape[0], -1), 0)[-1]

  def decode(self, code: jax.Array, shape: Sequence[int] | None = None) -> jax.Array:
    return self._output(self._decode_all(code)[1], (code.shape[0], *(shape or (self.features,))))

  def __call__(self, x: jax.Array, *, train: bool = False):
    del train  # no dropout / batch norm in this model
    enc = self._encode_from(x.reshape(x.shape[0], -1), 0)
    dec, logits = self._decode_all(enc[-1])
    return self._output(logits, x.shape), {'encoder': enc, 'code': enc[-1], 'decoder': dec,
                                           'logits': logits.reshape(x.shape)}

  def from_layer(self, h: jax.Array, layer: str):
    """(reconstruction [B, D], {'logits'}) from feature layer `layer`'s activations h [B, units]."""
    code = self._encode_from(h, layer_index(layer, len(self.shape.hidden)))[-1:] or (h,)
    _, logits = self._decode_all(code[-1])
    return self._output(logits, logits.shape), {'logits': logits}

  def first_kernel(self) -> jax.Array:
    """encoder_1's kernel [in, out] (the contractive term's closed form)."""
    return self.encoder_layers[0].variables['params']['kernel']

  # --- capabilities (see base.py) ----------------------------------------------------------------

  @nn.nowrap
  def layer_activations(self) -> dict[str, str]:
    """Encoder layer '1'..'K' and 'code' -> activation (the terms address encoder layers only)."""
    names = self.shape.activation
    return {**{str(i + 1): a for i, a in enumerate(names)}, 'code': names[-1]}

  @nn.nowrap
  def filters(self, params) -> np.ndarray | None:
    """encoder_1's weights as images (image data only), whatever the decoder."""
    return kernel_images(params['encoder_1']['kernel'], self.input_shape)

  @nn.nowrap
  def layers(self, params) -> list[base.Layer]:
    """encoder_1..K then decoder_1..M (decoder_M the output layer) in forward order; a tied
    decoder layer gets its effective kernel, the encoder's transposed."""
    s, p, k = self.shape, params, len(self.shape.hidden)
    out = [base.Layer(f'encoder_{i + 1}', np.asarray(p[f'encoder_{i + 1}']['kernel']),
                      np.asarray(p[f'encoder_{i + 1}']['bias']), s.activation[i]) for i in range(k)]
    for i, act in enumerate((*s.decoder_activation, s.output_activation)):
      name = f'decoder_{i + 1}'
      kernel = p[f'encoder_{k - i}']['kernel'].T if s.tied else p[name]['kernel']
      out.append(base.Layer(name, np.asarray(kernel), np.asarray(p[name]['bias']), act))
    return out

  @nn.nowrap
  def export(self, params, stats) -> base.Export:
    del stats
    net, k = self.layers(params), len(self.shape.hidden)
    outs = [f'h{i + 1}' if i < k else f'd{i - k + 1}' for i in range(len(net) - 1)] + ['z_hat']
    return base.dense_export(net, outs, codes={i: (str(i + 1),) for i in range(k - 1)} | {
        k - 1: (str(k), 'code')}, roles={k - 1: ' (the code)'})

  @nn.nowrap
  def stackable_encoder(self, params) -> list:
    """The encoder layers' parameters in order (a stacked autoencoder's stage)."""
    return [params[f'encoder_{i + 1}'] for i in range(len(self.shape.hidden))]

  @nn.nowrap
  def dense_stack(self) -> list[tuple[int, str]] | None:
    """(width, activation) of every layer, code to output, of an untied stack (what another
    framework builds as a plain sequence of dense layers); None when tied."""
    s = self.shape
    if s.tied:
      return None
    return list(zip((*s.hidden, *s.decoder, self.features),
                    (*s.activation, *s.decoder_activation, s.output_activation)))


def kernel_images(kernel, feature_shape: Sequence[int]) -> np.ndarray | None:
  """A first-layer kernel [in, out] as `out` images [n, *feature_shape] (None for non-images)."""
  if len(feature_shape) != 3:
    return None
  kernel = np.asarray(kernel)
  return kernel.T.reshape(kernel.shape[1], *feature_shape)


def build(cfg: ml_collections.ConfigDict, feature_shape: Sequence[int]) -> DenseAE:
  return DenseAE(input_shape=tuple(int(d) for d in feature_shape), shape=resolve(cfg))
