"""Variational autoencoder: Gaussian encoder q(z|x) = N(mean, diag exp(logvar)), prior N(0, I),
Bernoulli (logits), Gaussian or discretized logistic decoder p(x|z), with a dense or
convolutional body.

  body='dense': x -> hidden_1 .. hidden_K (activation) -> mean, logvar (linear, `latent` wide);
                z -> hidden_K .. hidden_1 -> logits (the decoder mirrors the encoder).
  body='conv':  the ConvEncoder / ConvDecoder of aelab/models/conv.py around the same heads.

`__call__(x, train)` draws one reparameterised sample z = mean + exp(logvar / 2) * eps with
eps ~ N(0, I) from the flax rng stream 'noise', and returns (recon, aux): recon is the decoder's
mean (sigmoid(logits) for Bernoulli, the linear output for Gaussian); aux holds 'mean',
'logvar', 'z', 'logits', 'encoder' (hidden activations), 'decoder', 'code' (= the posterior
mean) and, for Gaussian, 'log_sigma' (one learned scalar: log of the output std); for the
discretized logistic (8-bit data), 'log_scale' (one learned log scale per feature).
The loss is `reconstruction` (bce / gaussian / logistic, reduction='sum') + `vae_kl`; with
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

from aelab.config import checks
from aelab.errors import AelabError
from aelab.models import activations, base, conv, dense, gaussian, likelihoods

OPTIONS = dict(
    body='dense',
    hidden=(200, 200),       # dense body: encoder widths; the decoder mirrors them
    channels=(32, 64),       # conv body: encoder conv widths (stride 2 each)
    conv_hidden=(),          # conv body: dense widths between the convolutions and the code
                             # (disentanglement_lib's (256,)); the decoder mirrors them
    kernel_size=3,           # conv body
    latent=50,               # width of z
    activation='tanh',
    likelihood='bernoulli',  # 'bernoulli' (logits; data in [0, 1]), 'gaussian' (learned
                             # scalar std) or 'logistic' (discretized, 8-bit data in [0, 1];
                             # a learned scale per feature)
    output_bias='zeros',     # dense body: 'zeros', or 'data': the output starts at the
                             # training rows' mean (Bernoulli: its logits; Burda et al.'s code)
)
BODIES = ('dense', 'conv')
LIKELIHOODS = ('bernoulli', 'gaussian', 'logistic')
LOG_SCALE_INIT = -2.0  # the logistic likelihood's initial log scale (a scale of 0.14)
_LOG_2PI = math.log(2 * math.pi)


class VAE(base.Model):
  body: str
  hidden: tuple[int, ...]
  channels: tuple[int, ...]
  kernel_size: int
  latent: int
  activation: str
  likelihood: str
  conv_hidden: tuple[int, ...]
  output_bias: str

  def setup(self):
    if self.body == 'dense':
      self.encoder_layers = [nn.Dense(h, name=f'encoder_{i + 1}') for i, h in enumerate(self.hidden)]
      self.decoder_layers = [nn.Dense(h, name=f'decoder_{i + 1}')
                             for i, h in enumerate(reversed(self.hidden))]
      self.output_layer = nn.Dense(self.features, name='decoder_out')
    else:
      self.conv_encoder = conv.ConvEncoder(self.channels, self.kernel_size, self.activation)
      self.conv_decoder = conv.ConvDecoder(self.channels, self.kernel_size, self.activation,
                                           shape=self.input_shape)
      self.encoder_dense = [nn.Dense(h, name=f'encoder_dense_{i + 1}')
                            for i, h in enumerate(self.conv_hidden)]
      self.decoder_dense = [nn.Dense(h, name=f'decoder_dense_{i + 1}')
                            for i, h in enumerate(reversed(self.conv_hidden))]
    self.mean_layer = nn.Dense(self.latent, name='mean')
    self.logvar_layer = nn.Dense(self.latent, name='logvar')
    if self.likelihood == 'gaussian':
      self.log_sigma = self.param('log_sigma', nn.initializers.zeros_init(), ())
    if self.likelihood == 'logistic':
      self.log_scale = self.param('log_scale', nn.initializers.constant(LOG_SCALE_INIT),
                                  (self.features,))

  # --- building blocks --------------------------------------------------------------------------

  def _posterior(self, x: jax.Array):
    """x [B, *shape] -> (hidden activations, mean [B, L], logvar [B, L])."""
    if self.body == 'dense':
      h, hs = activations.through(self.encoder_layers, self.activation, x.reshape(x.shape[0], -1))
    else:
      hs, h = self.conv_encoder(x.reshape(x.shape[0], *self.input_shape))
      h, dense_hs = activations.through(self.encoder_dense, self.activation, h)
      hs = (*hs, *dense_hs)
    return hs, self.mean_layer(h), self.logvar_layer(h)

  def _decode_logits(self, z: jax.Array):
    """z [N, L] -> (hidden activations, logits [N, *shape])."""
    if self.body == 'dense':
      h, hs = activations.through(self.decoder_layers, self.activation, z)
      logits = self.output_layer(h)
    else:
      h, dense_hs = activations.through(self.decoder_dense, self.activation, z)
      hs, logits = self.conv_decoder(h)
      hs = (*dense_hs, *hs)
    return hs, logits.reshape(z.shape[0], *self.input_shape)

  def _mean_output(self, logits: jax.Array) -> jax.Array:
    if self.likelihood == 'logistic':  # the logistic's mean, in the data's range
      return jnp.clip(logits, 0.0, 1.0)
    return jax.nn.sigmoid(logits) if self.likelihood == 'bernoulli' else logits

  def _log_likelihood(self, logits: jax.Array, x: jax.Array) -> jax.Array:
    """log p(x | z) summed over the features of each row; logits and x [..., D]."""
    if self.likelihood == 'bernoulli':
      return -jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x), axis=-1)
    if self.likelihood == 'logistic':
      return jnp.sum(likelihoods.discretized_logistic(logits, self.log_scale, x), axis=-1)
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
    if self.likelihood == 'logistic':
      aux['log_scale'] = self.log_scale
    return self._mean_output(flat).reshape(x.shape), aux

  def log_weights(self, x: jax.Array, k: int) -> jax.Array:
    """[B, k] log importance weights log p(x|z_i) + log p(z_i) - log q(z_i|x), z_i ~ q(z|x)."""
    _, mean, logvar = self._posterior(x)
    eps = jax.random.normal(self.make_rng('noise'), (k, *mean.shape), mean.dtype)
    z = mean + jnp.exp(0.5 * logvar) * eps                          # [k, B, L]
    _, logits = self._decode_logits(z.reshape(-1, mean.shape[-1]))
    logits = logits.reshape(k, x.shape[0], -1)
    log_px = self._log_likelihood(logits, x.reshape(1, x.shape[0], -1))
    log_pz = self._log_prior(z)
    log_qz = -0.5 * jnp.sum(jnp.square(eps) + logvar + _LOG_2PI, axis=-1)
    return (log_px + log_pz - log_qz).T

  def _log_prior(self, z: jax.Array) -> jax.Array:
    """log p(z) summed over the last axis: N(0, I) here."""
    return -0.5 * jnp.sum(jnp.square(z) + _LOG_2PI, axis=-1)

  # The importance weights in three parts, for the DReG gradient (aelab/losses/generative.py):
  # latents are tuples of [k, B, L] arrays.
  def posterior_sample(self, x: jax.Array, k: int) -> tuple[jax.Array]:
    _, mean, logvar = self._posterior(x)
    return (gaussian.draw(self.make_rng('noise'), mean, logvar, k),)

  def log_posterior(self, x: jax.Array, zs: tuple[jax.Array]) -> jax.Array:
    _, mean, logvar = self._posterior(x)
    return gaussian.log_normal(zs[0], mean, logvar)

  def log_joint(self, x: jax.Array, zs: tuple[jax.Array]) -> jax.Array:
    """[k, B] log p(x | z) + log p(z)."""
    z = zs[0]
    _, logits = self._decode_logits(z.reshape(-1, z.shape[-1]))
    log_px = self._log_likelihood(logits.reshape(*z.shape[:2], -1),
                                  x.reshape(1, x.shape[0], -1))
    return log_px + self._log_prior(z)

  def from_layer(self, h: jax.Array, layer: str):
    """(the decoder's mean, {'logits'}) from encoder layer `layer`'s activations h: the rest of
    the encoder to the posterior mean, decoded without sampling ('code' is that mean)."""
    if layer != 'code':
      if self.body != 'dense':
        raise AelabError(f"a conv VAE continues its forward pass from its code only (layer "
                         f"'code'); got layer {layer!r}")
      act = activations.get(self.activation)
      for dense_layer in self.encoder_layers[int(layer):]:
        h = act(dense_layer(h))
      h = self.mean_layer(h)
    _, logits = self._decode_logits(h)
    return self._mean_output(logits), {'logits': logits}

  # --- capabilities (see base.py) ----------------------------------------------------------------

  @nn.nowrap
  def data_init(self, rows) -> dict:
    """The output bias at the training rows' mean (output_bias 'data'), else nothing."""
    if self.output_bias != 'data':
      return {}
    return {'decoder_out': {'bias': likelihoods.output_bias(rows(), self.likelihood)}}

  @nn.nowrap
  def layer_activations(self) -> dict[str, str]:
    depth = len(self.hidden) if self.body == 'dense' else len(self.channels) + len(self.conv_hidden)
    return {**{str(i + 1): self.activation for i in range(depth)}, 'code': 'linear'}

  @nn.nowrap
  def filters(self, params) -> np.ndarray | None:
    """The first encoder layer's weights as images [n, h, w, c]."""
    if self.body == 'dense':
      return dense.kernel_images(params['encoder_1']['kernel'], self.input_shape)
    return conv.conv_filters(params['conv_encoder']['conv_1']['kernel'])

  def prior_codes(self, n: int):
    """n draws of z ~ N(0, I): decoded, they are the model's samples."""
    return jax.random.normal(self.make_rng('noise'), (n, self.latent))

  @nn.nowrap
  def export(self, params, stats) -> base.Export:
    del stats
    if self.body == 'conv':
      if self.conv_hidden:
        raise AelabError('a conv VAE with dense layers after its convolutions (model.conv_hidden) '
                         'does not export its arrays yet; use conv_hidden=()')
      return conv.conv_export(params, self.channels, self.activation, 'conv_encoder',
                              'conv_decoder', [
          f'mean = flatten(m{len(self.channels)}) @ mean/kernel + mean/bias   [the code]',
          f'logvar = flatten(m{len(self.channels)}) @ logvar/kernel + logvar/bias'],
          [f'x_hat = {self._output_words()}'])
    return self._dense_export(params)

  @nn.nowrap
  def _output_words(self) -> str:
    return ('sigmoid(logits) (Bernoulli means)' if self.likelihood == 'bernoulli'
            else 'logits (Gaussian means; std exp(log_sigma))')

  @nn.nowrap
  def _dense_export(self, params) -> base.Export:
    p, k = params, len(self.hidden)
    layer = lambda name, act: base.Layer(name, np.asarray(p[name]['kernel']),  # noqa: E731
                                         np.asarray(p[name]['bias']), act)
    net = ([layer(f'encoder_{i + 1}', self.activation) for i in range(k)]
           + [layer('mean', 'linear')]
           + [layer(f'decoder_{i + 1}', self.activation) for i in range(k)]
           + [layer('decoder_out', 'sigmoid' if self.likelihood == 'bernoulli' else 'linear')])
    outs = ([f'h{i + 1}' for i in range(k)] + ['mean'] + [f'd{i + 1}' for i in range(k)]
            + ['z_hat'])
    out = base.dense_export(net, outs, codes={i: (str(i + 1),) for i in range(k)} | {k: ('code',)},
                            roles={k: ' (the code: the posterior mean)', len(net) - 1:
                                   ' (the decoder\'s mean at z = mean)'})
    log = layer('logvar', 'linear')
    out.arrays.update({'logvar/kernel': log.kernel, 'logvar/bias': log.bias})
    out.about.update({'logvar/kernel': (f'logvar kernel, shape {list(log.kernel.shape)} = '
                                        f'[in, out]: logvar = h{k} @ kernel + bias',),
                      'logvar/bias': (f'logvar bias, shape [{len(log.bias)}]',)})
    out.steps.insert(k + 1, base.Step(f'logvar = h{k} @ logvar/kernel + logvar/bias   (the '
                                      f'posterior q(z|x) = N(mean, exp(logvar)); a sample '
                                      f'z = mean + exp(logvar / 2) * eps)'))
    if 'log_sigma' in p:
      out.arrays['log_sigma'] = np.asarray(p['log_sigma'])
      out.about['log_sigma'] = ('log_sigma: the log of the Gaussian decoder\'s std (a scalar)',)
    return out


def build(cfg: ml_collections.ConfigDict, feature_shape: Sequence[int]) -> VAE:
  return VAE(**fields(cfg, feature_shape))


def fields(cfg: ml_collections.ConfigDict, feature_shape: Sequence[int]) -> dict:
  """The VAE's module fields from config.model, checked (one-line errors)."""
  checks.choice(cfg.body, BODIES, 'model.body')
  checks.choice(cfg.likelihood, LIKELIHOODS, 'model.likelihood')
  output_bias = checks.choice(cfg.get('output_bias', 'zeros'), likelihoods.OUTPUT_BIASES,
                              'model.output_bias')
  if output_bias == 'data' and cfg.body != 'dense':
    raise AelabError("model.output_bias='data' needs body='dense' (a conv decoder's output bias is "
                     "one per channel); use 'zeros'")
  activations.get(cfg.activation)
  checks.integer(cfg.latent, 'model.latent', low=1, high=checks.INT32_MAX)
  shape = tuple(int(s) for s in feature_shape)
  hidden, channels = conv.check_body(cfg, feature_shape, 'vae', '(200, 200)')
  conv_hidden = checks.widths(cfg.get('conv_hidden', ()), 'model.conv_hidden', 'dense width')
  return dict(input_shape=shape, body=cfg.body, hidden=hidden, channels=channels,
              kernel_size=int(cfg.kernel_size), latent=int(cfg.latent),
              activation=cfg.activation, likelihood=cfg.likelihood, conv_hidden=conv_hidden,
              output_bias=output_bias)
