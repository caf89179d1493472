"""Variational autoencoder: Gaussian encoder q(z|x) = N(mean, diag exp(logvar)), prior N(0, I),
Bernoulli (logits) or Gaussian decoder p(x|z), with a dense or convolutional body.

  body='dense': x -> hidden_1 .. hidden_K (activation) -> mean, logvar (linear, `latent` wide);
                z -> hidden_K .. hidden_1 -> logits (the decoder mirrors the encoder).
  body='conv':  the ConvEncoder / ConvDecoder of aelab/models/conv.py around the same heads.

`__call__(x, train)` draws one reparameterised sample z = mean + exp(logvar / 2) * eps with
eps ~ N(0, I) from the flax rng stream 'noise', and returns (recon, aux): recon is the decoder's
mean (sigmoid(logits) for Bernoulli, the linear output for Gaussian); aux holds 'mean',
'logvar', 'z', 'logits', 'encoder' (hidden activations), 'decoder', 'code' (= the posterior
mean) and, for Gaussian, 'log_sigma' (one learned scalar: log of the output std).
The loss is `reconstruction` (bce for Bernoulli / gaussian, reduction='sum') + `vae_kl`; with
weights 1 and 1 it is the negative ELBO in nats per example.

`encode(x)` returns the posterior mean; `encode(x, sample=True)` a sample (needs the 'noise'
rng). `log_weights(x, k)` gives the k importance weights log p(x, z) - log q(z|x) that the
IWAE bound (aelab/iwae.py) averages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aelab.config import check_choice
from aelab.config.defaults import MODELS
from aelab.errors import AelabError
from aelab.models import activations, conv

BODIES = ('dense', 'conv')
LIKELIHOODS = ('bernoulli', 'gaussian')
_LOG_2PI = math.log(2 * math.pi)

DEFAULTS = MODELS['vae']  # the fields of config.model (aelab/config/defaults.py)


class VAE(nn.Module):
  shape: Sequence[int]
  body: str = 'dense'
  hidden: Sequence[int] = (200, 200)
  channels: Sequence[int] = (32, 64)
  kernel_size: int = 3
  latent: int = 50
  activation: str = 'tanh'
  likelihood: str = 'bernoulli'

  def setup(self):
    if self.body == 'dense':
      self.encoder_layers = [nn.Dense(h, name=f'encoder_{i + 1}') for i, h in enumerate(self.hidden)]
      self.decoder_layers = [nn.Dense(h, name=f'decoder_{i + 1}')
                             for i, h in enumerate(reversed(self.hidden))]
      self.output_layer = nn.Dense(math.prod(self.shape), name='decoder_out')
    else:
      self.conv_encoder = conv.ConvEncoder(self.channels, self.kernel_size, self.activation)
      self.conv_decoder = conv.ConvDecoder(self.channels, self.kernel_size, self.activation,
                                           shape=tuple(self.shape))
    self.mean_layer = nn.Dense(self.latent, name='mean')
    self.logvar_layer = nn.Dense(self.latent, name='logvar')
    if self.likelihood == 'gaussian':
      self.log_sigma = self.param('log_sigma', nn.initializers.zeros_init(), ())

  # --- building blocks --------------------------------------------------------------------------

  def _posterior(self, x: jax.Array):
    """x [B, *shape] -> (hidden activations, mean [B, L], logvar [B, L])."""
    act = activations.get(self.activation)
    if self.body == 'dense':
      h, hs = x.reshape(x.shape[0], -1), []
      for layer in self.encoder_layers:
        h = act(layer(h))
        hs.append(h)
      hs = tuple(hs)
    else:
      hs, h = self.conv_encoder(x.reshape(x.shape[0], *self.shape))
    return hs, self.mean_layer(h), self.logvar_layer(h)

  def _decode_logits(self, z: jax.Array):
    """z [N, L] -> (hidden activations, logits [N, *shape])."""
    if self.body == 'dense':
      act = activations.get(self.activation)
      h, hs = z, []
      for layer in self.decoder_layers:
        h = act(layer(h))
        hs.append(h)
      logits = self.output_layer(h)
      hs = tuple(hs)
    else:
      hs, logits = self.conv_decoder(z)
    return hs, logits.reshape(z.shape[0], *self.shape)

  def _mean_output(self, logits: jax.Array) -> jax.Array:
    return jax.nn.sigmoid(logits) if self.likelihood == 'bernoulli' else logits

  def _log_likelihood(self, logits: jax.Array, x: jax.Array) -> jax.Array:
    """log p(x | z) summed over the features of each row; logits and x [..., D]."""
    if self.likelihood == 'bernoulli':
      return -jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x), axis=-1)
    log_sigma = self.log_sigma
    return -jnp.sum(0.5 * jnp.square((x - logits) * jnp.exp(-log_sigma)) + log_sigma
                    + 0.5 * _LOG_2PI, axis=-1)

  # --- the model contract -----------------------------------------------------------------------

  def encode(self, x: jax.Array, sample: bool = False) -> jax.Array:
    """The posterior mean, or with sample=True one draw from q(z|x) (rng stream 'noise')."""
    _, mean, logvar = self._posterior(x)
    if not sample:
      return mean
    return mean + jnp.exp(0.5 * logvar) * jax.random.normal(self.make_rng('noise'), mean.shape, mean.dtype)

  def decode(self, z: jax.Array) -> jax.Array:
    """The decoder's mean E[x | z], shaped [N, *shape]."""
    return self._mean_output(self._decode_logits(z)[1])

  def __call__(self, x: jax.Array, *, train: bool = False):
    del train  # sampling happens in training and evaluation alike (the ELBO needs it)
    hs, mean, logvar = self._posterior(x)
    eps = jax.random.normal(self.make_rng('noise'), mean.shape, mean.dtype)
    z = mean + jnp.exp(0.5 * logvar) * eps
    dec, logits = self._decode_logits(z)
    flat = logits.reshape(x.shape[0], -1)  # element-wise ops on flat rows (see models/dense.py)
    aux = {'encoder': hs, 'code': mean, 'mean': mean, 'logvar': logvar, 'z': z,
           'decoder': dec, 'logits': flat.reshape(x.shape)}
    if self.likelihood == 'gaussian':
      aux['log_sigma'] = self.log_sigma
    return self._mean_output(flat).reshape(x.shape), aux

  def log_weights(self, x: jax.Array, k: int) -> jax.Array:
    """[B, k] log importance weights log p(x|z_i) + log p(z_i) - log q(z_i|x), z_i ~ q(z|x)."""
    _, mean, logvar = self._posterior(x)
    eps = jax.random.normal(self.make_rng('noise'), (k, *mean.shape), mean.dtype)
    z = mean + jnp.exp(0.5 * logvar) * eps                          # [k, B, L]
    _, logits = self._decode_logits(z.reshape(-1, mean.shape[-1]))
    logits = logits.reshape(k, x.shape[0], -1)
    log_px = self._log_likelihood(logits, x.reshape(1, x.shape[0], -1))
    log_pz = -0.5 * jnp.sum(jnp.square(z) + _LOG_2PI, axis=-1)
    log_qz = -0.5 * jnp.sum(jnp.square(eps) + logvar + _LOG_2PI, axis=-1)
    return (log_px + log_pz - log_qz).T


def build(cfg: ml_collections.ConfigDict, feature_shape: Sequence[int]) -> VAE:
  check_choice(cfg.body, BODIES, 'model.body')
  check_choice(cfg.likelihood, LIKELIHOODS, 'model.likelihood')
  activations.get(cfg.activation)
  if not isinstance(cfg.latent, int) or isinstance(cfg.latent, bool) or cfg.latent <= 0:
    raise AelabError(f'model.latent = {cfg.latent!r}; it must be a positive integer')
  hidden = tuple(cfg.hidden)
  if cfg.body == 'dense':
    if not hidden or any(not isinstance(h, int) or isinstance(h, bool) or h <= 0 for h in hidden):
      raise AelabError(f'model.hidden = {hidden!r}; give one or more positive widths, e.g. (200, 200)')
    channels = tuple(cfg.channels)
  else:
    conv.check_image_shape(feature_shape, "model 'vae' with body 'conv'")
    channels = conv.check_conv_fields(cfg)
  return VAE(shape=tuple(int(s) for s in feature_shape), body=cfg.body, hidden=hidden,
             channels=channels, kernel_size=int(cfg.kernel_size), latent=int(cfg.latent),
             activation=cfg.activation, likelihood=cfg.likelihood)


def layer_activations(cfg: ml_collections.ConfigDict) -> dict[str, str]:
  depth = len(cfg.hidden) if cfg.body == 'dense' else len(cfg.channels)
  out = {str(i + 1): cfg.activation for i in range(depth)}
  out['code'] = 'linear'  # the posterior mean
  return out


def filters(params, feature_shape: Sequence[int]) -> np.ndarray | None:
  """The first encoder layer's weights as images [n, h, w, c]."""
  if 'encoder_1' in params:
    kernel = np.asarray(params['encoder_1']['kernel'])
    if len(feature_shape) != 3:
      return None
    return kernel.T.reshape(kernel.shape[1], *feature_shape)
  return conv.conv_filters(params['conv_encoder']['conv_1']['kernel'])
