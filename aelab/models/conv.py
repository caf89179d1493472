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

from aelab.config.defaults import MODELS
from aelab.errors import AelabError
from aelab.models import activations

DEFAULTS = MODELS['conv']  # the fields of config.model (aelab/config/defaults.py)


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


class ConvAE(nn.Module):
  """Conv encoder -> dense code -> dense + transposed-conv decoder; exactly the input shape back.

  `__call__` returns (recon, aux) with aux = {'encoder': (conv maps..., code), 'code',
  'decoder': hidden maps, 'logits'}.
  """
  shape: Sequence[int]
  channels: Sequence[int]
  kernel_size: int = 3
  latent: int = 32
  activation: str = 'relu'
  code_activation: str = 'linear'
  output_activation: str = 'sigmoid'

  def setup(self):
    self.encoder = ConvEncoder(self.channels, self.kernel_size, self.activation)
    self.code_layer = nn.Dense(self.latent)
    self.decoder = ConvDecoder(self.channels, self.kernel_size, self.activation,
                               shape=tuple(self.shape))

  def _encode_all(self, x):
    maps, flat = self.encoder(x.reshape(x.shape[0], *self.shape))
    code = activations.get(self.code_activation)(self.code_layer(flat))
    return (*maps, code)

  def encode(self, x: jax.Array) -> jax.Array:
    return self._encode_all(x)[-1]

  def decode(self, code: jax.Array) -> jax.Array:
    _, logits = self.decoder(code)
    return activations.get(self.output_activation)(logits)

  def __call__(self, x: jax.Array, *, train: bool = False):
    del train
    enc = self._encode_all(x)
    dec, logits = self.decoder(enc[-1])
    flat = logits.reshape(x.shape[0], -1)  # element-wise ops on flat rows (see models/dense.py)
    return activations.get(self.output_activation)(flat).reshape(x.shape), {
        'encoder': enc, 'code': enc[-1], 'decoder': dec, 'logits': flat.reshape(x.shape)}


def check_image_shape(feature_shape: Sequence[int], what: str) -> tuple[int, int, int]:
  if len(feature_shape) != 3:
    raise AelabError(f'{what} needs image data [H, W, C]; this dataset has feature shape '
                     f'{tuple(feature_shape)}. Use the dense model for tables.')
  return tuple(int(s) for s in feature_shape)


def check_conv_fields(cfg: ml_collections.ConfigDict, prefix: str = 'model') -> tuple[int, ...]:
  channels = tuple(cfg.channels)
  if not channels or any(not isinstance(c, int) or isinstance(c, bool) or c <= 0 for c in channels):
    raise AelabError(f'{prefix}.channels = {channels!r}; give one or more positive integers, '
                     'e.g. (32, 64)')
  if not isinstance(cfg.kernel_size, int) or cfg.kernel_size <= 0:
    raise AelabError(f'{prefix}.kernel_size = {cfg.kernel_size!r}; it must be a positive integer')
  activations.get(cfg.activation)
  return channels


def build(cfg: ml_collections.ConfigDict, feature_shape: Sequence[int]) -> ConvAE:
  shape = check_image_shape(feature_shape, "model 'conv'")
  channels = check_conv_fields(cfg)
  if not isinstance(cfg.latent, int) or cfg.latent <= 0:
    raise AelabError(f'model.latent = {cfg.latent!r}; it must be a positive integer')
  activations.get(cfg.code_activation)
  activations.get(cfg.output_activation)
  return ConvAE(shape=shape, channels=channels, kernel_size=cfg.kernel_size, latent=cfg.latent,
                activation=cfg.activation, code_activation=cfg.code_activation,
                output_activation=cfg.output_activation)


def layer_activations(cfg: ml_collections.ConfigDict) -> dict[str, str]:
  out = {str(i + 1): cfg.activation for i in range(len(cfg.channels))}
  out[str(len(cfg.channels) + 1)] = out['code'] = cfg.code_activation
  return out


def conv_filters(kernel: np.ndarray) -> np.ndarray:
  """A conv kernel [k, k, C, n] as n images [n, k, k, C]."""
  return np.transpose(np.asarray(kernel), (3, 0, 1, 2))


def filters(params, feature_shape: Sequence[int]) -> np.ndarray:
  """The first conv layer's kernels as images [n, k, k, C]."""
  del feature_shape
  return conv_filters(params['encoder']['conv_1']['kernel'])
