"""Convolutional autoencoder for images [H, W, C] of any size (taken from the dataset).

Encoder: `len(channels)` convolutions with stride 2 and SAME padding (spatial sizes
H -> ceil(H/2) -> ...), flatten, a dense code. Decoder: dense back to the last feature map,
transposed convolutions with stride 2, each cropped to the matching encoder size, the last one
to exactly (H, W, C) with C output channels. `ConvEncoder` / `ConvDecoder` are also the body of
the convolutional VAE (aelab/models/vae.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from aelab.config import checks
from aelab.errors import AelabError
from aelab.models import activations, base

OPTIONS = dict(
    channels=(32, 64),           # encoder conv widths (stride 2 each); the decoder mirrors them
    kernel_size=3,
    latent=32,                   # width of the dense code
    activation='relu',           # conv / dense hidden layers
    code_activation='linear',    # the code layer
    output_activation='sigmoid',
)


def spatial_sizes(size: int, depth: int) -> list[int]:
  """[size, ceil(size/2), ...]: the spatial size before each stride-2 SAME convolution and after the last."""
  out = [size]
  for _ in range(depth):
    out.append(-(-out[-1] // 2))
  return out


class ConvStack(nn.Module):
  """The fields the encoder and the decoder share: conv widths (stride 2 each), kernel, activation."""
  channels: Sequence[int]
  kernel_size: int = 3
  activation: str = 'relu'


class ConvEncoder(ConvStack):
  """x [B, H, W, C] -> (feature maps after each conv, flattened last map [B, h*w*c])."""

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[tuple[jax.Array, ...], jax.Array]:
    act = activations.get(self.activation)
    h, maps = x, []
    for i, c in enumerate(self.channels):
      h = act(nn.Conv(c, (self.kernel_size,) * 2, strides=(2, 2), padding='SAME',
                      name=f'conv_{i + 1}')(h))
      maps.append(h)
    return tuple(maps), h.reshape(h.shape[0], -1)


class ConvDecoder(ConvStack):
  """code [B, k] -> (hidden maps, logits [B, *shape]); `shape` = (H, W, C) of the data."""
  shape: Sequence[int] = ()

  @nn.compact
  def __call__(self, code: jax.Array) -> tuple[tuple[jax.Array, ...], jax.Array]:
    act = activations.get(self.activation)
    height, width, out_channels = self.shape
    hs, ws = spatial_sizes(height, len(self.channels)), spatial_sizes(width, len(self.channels))
    h = act(nn.Dense(hs[-1] * ws[-1] * self.channels[-1], name='dense')(code))
    h = h.reshape(code.shape[0], hs[-1], ws[-1], self.channels[-1])
    widths = list(reversed(self.channels[:-1])) + [out_channels]
    maps = []
    for i, c in enumerate(widths):
      h = nn.ConvTranspose(c, (self.kernel_size,) * 2, strides=(2, 2), padding='SAME',
                           name=f'deconv_{i + 1}')(h)
      level = len(self.channels) - 1 - i   # crop to the encoder's size at this depth
      h = h[:, :hs[level], :ws[level], :]
      if i < len(widths) - 1:
        h = act(h)
        maps.append(h)
    return tuple(maps), h


class ConvAE(base.Model):
  """Conv encoder -> dense code -> dense + transposed-conv decoder; exactly the input shape back.

  `__call__` returns (recon, aux) with aux = {'encoder': (conv maps..., code), 'code',
  'decoder': hidden maps, 'logits'}.
  """
  channels: tuple[int, ...]
  kernel_size: int
  latent: int
  activation: str
  code_activation: str
  output_activation: str

  def setup(self):
    self.encoder = ConvEncoder(self.channels, self.kernel_size, self.activation)
    self.code_layer = nn.Dense(self.latent)
    self.decoder = ConvDecoder(self.channels, self.kernel_size, self.activation,
                               shape=tuple(self.input_shape))

  def _encode_all(self, x):
    maps, flat = self.encoder(x.reshape(x.shape[0], *self.input_shape))
    code = activations.get(self.code_activation)(self.code_layer(flat))
    return (*maps, code)

  def _output(self, logits: jax.Array, shape) -> jax.Array:
    flat = logits.reshape(logits.shape[0], -1)  # element-wise ops on flat rows (see dense.py)
    return activations.get(self.output_activation)(flat).reshape(shape)

  def encode(self, x: jax.Array) -> jax.Array:
    return self._encode_all(x)[-1]

  def decode(self, code: jax.Array) -> jax.Array:
    _, logits = self.decoder(code)
    return self._output(logits, logits.shape)

  def __call__(self, x: jax.Array, *, train: bool = False):
    del train
    enc = self._encode_all(x)
    dec, logits = self.decoder(enc[-1])
    return self._output(logits, x.shape), {
        'encoder': enc, 'code': enc[-1], 'decoder': dec, 'logits': logits.reshape(x.shape)}

  def from_layer(self, h: jax.Array, layer: str):
    """(reconstruction, {'logits'}) from the code's activations h [B, latent]; the conv maps
    are not a place to continue from."""
    if layer not in ('code', str(len(self.channels) + 1)):
      raise AelabError(f'a conv model continues its forward pass from its code only (layer '
                       f"'code' or {len(self.channels) + 1}); got layer {layer!r}")
    _, logits = self.decoder(h)
    return self._output(logits, logits.shape), {'logits': logits}

  # --- capabilities (see base.py) ----------------------------------------------------------------

  @nn.nowrap
  def layer_activations(self) -> dict[str, str]:
    out = {str(i + 1): self.activation for i in range(len(self.channels))}
    out[str(len(self.channels) + 1)] = out['code'] = self.code_activation
    return out

  @nn.nowrap
  def filters(self, params) -> np.ndarray:
    """The first conv layer's kernels as images [n, k, k, C]."""
    return conv_filters(params['encoder']['conv_1']['kernel'])

  @nn.nowrap
  def export(self, params, stats) -> base.Export:
    del stats
    return conv_export(params, self.channels, self.activation, 'encoder', 'decoder', [
        f'code = {self.code_activation}(flatten(m{len(self.channels)}) @ code_layer/kernel + '
        f'code_layer/bias)   [the code, {self.latent} wide]'],
        ['z_hat = ' + self.output_activation + '(the last transposed convolution)'])


def check_image_shape(feature_shape: Sequence[int], what: str) -> tuple[int, int, int]:
  if len(feature_shape) != 3:
    raise AelabError(f'{what} needs image data [H, W, C]; this dataset has feature shape '
                     f'{tuple(feature_shape)}. Use the dense model for tables.')
  return tuple(int(s) for s in feature_shape)


def check_conv_fields(cfg: ml_collections.ConfigDict, prefix: str = 'model') -> tuple[int, ...]:
  channels = checks.widths(cfg.channels, f'{prefix}.channels', 'channel count',
                           empty='give one or more positive integers, e.g. (32, 64)')
  checks.integer(cfg.kernel_size, f'{prefix}.kernel_size', low=1, high=1024)
  activations.get(cfg.activation)
  return channels


def check_body(cfg: ml_collections.ConfigDict, feature_shape: Sequence[int], model: str,
               example: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """(hidden, channels) of a model whose body is `model.body`: 'dense' (hidden widths, e.g.
  `example`) or 'conv' (image data, channels and kernel_size checked)."""
  if cfg.body == 'dense':
    hidden = checks.widths(cfg.hidden, 'model.hidden', 'hidden width',
                           empty=f'give one or more positive widths, e.g. {example}')
    return hidden, tuple(cfg.channels)
  check_image_shape(feature_shape, f"model '{model}' with body 'conv'")
  return tuple(cfg.hidden), check_conv_fields(cfg)


def build(cfg: ml_collections.ConfigDict, feature_shape: Sequence[int]) -> ConvAE:
  shape = check_image_shape(feature_shape, "model 'conv'")
  channels = check_conv_fields(cfg)
  checks.integer(cfg.latent, 'model.latent', low=1, high=checks.INT32_MAX)
  activations.get(cfg.code_activation)
  activations.get(cfg.output_activation)
  return ConvAE(input_shape=shape, channels=channels, kernel_size=cfg.kernel_size,
                latent=cfg.latent, activation=cfg.activation,
                code_activation=cfg.code_activation, output_activation=cfg.output_activation)


def conv_filters(kernel: np.ndarray) -> np.ndarray:
  """A conv kernel [k, k, C, n] as n images [n, k, k, C]."""
  return np.transpose(np.asarray(kernel), (3, 0, 1, 2))


def conv_export(params, channels, activation: str, encoder: str, decoder: str,
                middle: list[str], last: list[str]) -> base.Export:
  """Every array of a conv encoder / decoder pair by its path, and the computation in words:
  stride-2 SAME convolutions, the `middle` lines, then the decoder's transposed convolutions."""
  flat = {'/'.join(str(getattr(k, 'key', k)) for k in path): np.asarray(v)
          for path, v in jax.tree_util.tree_flatten_with_path(params)[0]}
  about = {k: (f'{k}, shape {list(v.shape)}'
               + (' = [kh, kw, in channels, out channels]' if v.ndim == 4 else ''),)
           for k, v in flat.items()}
  steps = [base.Step(f'm{i + 1} = {activation}(conv2d({f"m{i}" if i else "z"}, '
                     f'{encoder}/conv_{i + 1}/kernel, stride 2, SAME padding) + '
                     f'{encoder}/conv_{i + 1}/bias)   [{c} channels]', (str(i + 1),))
           for i, c in enumerate(channels)]
  steps += [base.Step(line, ('code',)) for line in middle]
  steps.append(base.Step(f'{decoder}: dense to the last map, then transposed convolutions '
                         f'(stride 2, SAME, each cropped to the encoder size at its depth), '
                         f'{activation} between them'))
  steps += [base.Step(line) for line in last]
  return base.Export(flat, about, steps, {}, 'conv kernels are [kh, kw, in, out] (flax / '
                     'TensorFlow HWIO), dense kernels [in, out]; by hand a convolution needs a '
                     'conv2d routine (e.g. jax.lax.conv_general_dilated)')
