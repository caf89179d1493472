"""VAE with several stochastic layers (Burda et al. 2016's two-layer architecture by default:
784-100-100-[100]-50-50-[50], tanh): Gaussian layers z_1 .. z_L above the data.

  inference   q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_{L-1}): stochastic layer l is a tanh MLP of
              widths hidden[l] on the layer below, then linear heads mean and logvar (latents[l]);
  generation  p(z_L) = N(0, I), p(z_{l-1} | z_l) the mirrored MLP (hidden[l] reversed) with
              Gaussian heads, p(x | z_1) Bernoulli (logits) or Gaussian (one learned scalar std)
              through hidden[0] reversed.

`__call__(x, train)` draws one chain z_1 .. z_L from q (rng stream 'noise') and returns the
decoder's mean at z_1 and aux with 'log_posterior' = log q(z|x) and 'log_prior' = log p(z_1..z_L)
at that draw, so that reconstruction (bce, reduction 'sum') + kl_sample is the negative ELBO;
the iwae term trains it as an IWAE. The code is the bottom layer z_1, the one the decoder reads:
encode(x) is the mean of q(z_1 | x), decode(z_1) the decoder's mean, and prior_codes draws z_1
ancestrally (z_L ~ N(0, I), then each z_{l-1} ~ p(z_{l-1} | z_l)), so decoded prior codes are the
samples of Burda et al.'s code (the pixels at their means).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from aelab.config import checks
from aelab.errors import AelabError
from aelab.models import activations, base, gaussian, likelihoods

OPTIONS = dict(
    hidden=((100, 100), (50, 50)),   # the deterministic widths below each stochastic layer
    latents=(100, 50),               # the stochastic layers' widths, bottom (z_1) to top (z_L)
    activation='tanh',
    likelihood='bernoulli',          # 'bernoulli' (logits; data in [0, 1]) or 'gaussian'
    output_bias='data',              # 'data': the output starts at the training rows' mean
                                     # (Bernoulli: its logits; Burda et al.'s code), or 'zeros'
)
LIKELIHOODS = ('bernoulli', 'gaussian')


class _Gaussian(nn.Module):
  """An MLP (widths, activation) then linear heads: mean, logvar of `latent` (or logits: 0)."""
  widths: tuple[int, ...]
  latent: int
  activation: str
  heads: bool = True

  @nn.compact
  def __call__(self, h):
    act, hs = activations.get(self.activation), []
    for i, w in enumerate(self.widths):
      h = act(nn.Dense(w, name=f'dense_{i + 1}')(h))
      hs.append(h)
    if not self.heads:
      return tuple(hs), nn.Dense(self.latent, name='out')(h), None
    return tuple(hs), nn.Dense(self.latent, name='mean')(h), nn.Dense(self.latent, name='logvar')(h)


class HierarchicalVAE(base.Model):
  hidden: tuple[tuple[int, ...], ...]
  latents: tuple[int, ...]
  activation: str
  likelihood: str
  output_bias: str

  def setup(self):
    n = len(self.latents)
    self.up = [_Gaussian(self.hidden[l], self.latents[l], self.activation, name=f'encoder_{l + 1}')
               for l in range(n)]
    # down[l] maps z_{l+1} to layer l's distribution: z_l (l >= 1) or x (l = 0).
    self.down = [_Gaussian(tuple(reversed(self.hidden[l])),
                           self.latents[l - 1] if l else self.features, self.activation,
                           heads=bool(l), name=f'decoder_{l + 1}') for l in range(n)]
    if self.likelihood == 'gaussian':
      self.log_sigma = self.param('log_sigma', nn.initializers.zeros_init(), ())

  def _flat(self, x: jax.Array) -> jax.Array:
    return x.reshape(*x.shape[:-len(self.input_shape)], self.features)

  def _log_likelihood(self, logits: jax.Array, x: jax.Array) -> jax.Array:
    if self.likelihood == 'bernoulli':
      return -jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x), axis=-1)
    return gaussian.log_normal(x, logits, jnp.broadcast_to(2.0 * self.log_sigma, logits.shape))

  def _mean_output(self, logits: jax.Array) -> jax.Array:
    return jax.nn.sigmoid(logits) if self.likelihood == 'bernoulli' else logits

  # --- the chain -------------------------------------------------------------------------------

  def posterior_sample(self, x: jax.Array, k: int) -> tuple[jax.Array, ...]:
    """k chains z_1 .. z_L ~ q(z | x), each [k, B, latents[l]]."""
    h, zs = jnp.broadcast_to(self._flat(x), (k, x.shape[0], self.features)), []
    for layer in self.up:
      _, mean, logvar = layer(h)
      h = gaussian.draw(self.make_rng('noise'), mean, logvar)
      zs.append(h)
    return tuple(zs)

  def log_posterior(self, x: jax.Array, zs: tuple[jax.Array, ...]) -> jax.Array:
    """[k, B] log q(z_1 | x) + sum_l log q(z_l | z_{l-1})."""
    below = (jnp.broadcast_to(self._flat(x), (*zs[0].shape[:2], self.features)), *zs[:-1])
    total = 0.0
    for layer, h, z in zip(self.up, below, zs):
      _, mean, logvar = layer(h)
      total = total + gaussian.log_normal(z, mean, logvar)
    return total

  def log_joint(self, x: jax.Array, zs: tuple[jax.Array, ...]) -> jax.Array:
    """[k, B] log p(x | z_1) + sum_l log p(z_l | z_{l+1}) + log p(z_L)."""
    total = gaussian.log_standard_normal(zs[-1])
    for l in range(len(zs) - 1, 0, -1):
      _, mean, logvar = self.down[l](zs[l])
      total = total + gaussian.log_normal(zs[l - 1], mean, logvar)
    _, logits, _ = self.down[0](zs[0])
    return total + self._log_likelihood(logits, self._flat(x)[None])

  def log_weights(self, x: jax.Array, k: int) -> jax.Array:
    """[B, k] log p(x, z) - log q(z | x) at k chains from q (the IWAE bound's weights)."""
    zs = self.posterior_sample(x, k)
    return (self.log_joint(x, zs) - self.log_posterior(x, zs)).T

  # --- the model contract ----------------------------------------------------------------------

  def encode(self, x: jax.Array) -> jax.Array:
    """The mean of q(z_1 | x)."""
    return self.up[0](self._flat(x))[1]

  def decode(self, z: jax.Array) -> jax.Array:
    """The decoder's mean at bottom codes z_1."""
    logits = self.down[0](z)[1]
    return self._mean_output(logits).reshape(z.shape[0], *self.input_shape)

  def prior_codes(self, n: int):
    """n draws of z_1 from the generative chain: z_L ~ N(0, I), z_{l-1} ~ p(z_{l-1} | z_l)."""
    z = jax.random.normal(self.make_rng('noise'), (n, self.latents[-1]))
    for l in range(len(self.latents) - 1, 0, -1):
      _, mean, logvar = self.down[l](z)
      z = gaussian.draw(self.make_rng('noise'), mean, logvar)
    return z

  def __call__(self, x: jax.Array, *, train: bool = False):
    del train  # sampling happens in training and evaluation alike
    h, zs, hs, stats = self._flat(x), [], [], []
    for layer in self.up:
      enc, mean, logvar = layer(h)
      h = gaussian.draw(self.make_rng('noise'), mean, logvar)
      hs.append(enc)
      zs.append(h)
      stats.append((mean, logvar))
    log_q = sum(gaussian.log_normal(z, m, lv) for z, (m, lv) in zip(zs, stats))
    log_p = gaussian.log_standard_normal(zs[-1])
    for l in range(len(zs) - 1, 0, -1):
      _, mean, logvar = self.down[l](zs[l])
      log_p = log_p + gaussian.log_normal(zs[l - 1], mean, logvar)
    dec, logits, _ = self.down[0](zs[0])
    aux = {'encoder': hs[0], 'code': stats[0][0], 'mean': stats[0][0],
           'logvar': stats[0][1], 'z': zs[0], 'latents': tuple(zs), 'decoder': dec,
           'logits': logits.reshape(x.shape), 'log_posterior': log_q, 'log_prior': log_p}
    if self.likelihood == 'gaussian':
      aux['log_sigma'] = self.log_sigma
    return self._mean_output(logits).reshape(x.shape), aux

  @nn.nowrap
  def data_init(self, rows) -> dict:
    """The output bias at the training rows' mean (output_bias 'data'), else nothing."""
    if self.output_bias != 'data':
      return {}
    return {'decoder_1': {'out': {'bias': likelihoods.output_bias(rows(), self.likelihood)}}}

  @nn.nowrap
  def layer_activations(self) -> dict[str, str]:
    """The layers from x to the code z_1: hidden[0], then its mean."""
    return {**{str(i + 1): self.activation for i in range(len(self.hidden[0]))}, 'code': 'linear'}


def build(cfg: ml_collections.ConfigDict, feature_shape: Sequence[int]) -> HierarchicalVAE:
  checks.choice(cfg.likelihood, LIKELIHOODS, 'model.likelihood')
  output_bias = checks.choice(cfg.get('output_bias', 'zeros'), likelihoods.OUTPUT_BIASES,
                              'model.output_bias')
  activations.get(cfg.activation)
  latents = checks.widths(cfg.latents, 'model.latents', 'latent width',
                          empty='give one width per stochastic layer, e.g. (100, 50)')
  hidden = cfg.hidden
  if not isinstance(hidden, (tuple, list)) or len(hidden) != len(latents):
    raise AelabError(f'model.hidden must give the deterministic widths below each of the '
                     f'{len(latents)} stochastic layers, e.g. ((100, 100), (50, 50)); got {hidden!r}')
  hidden = tuple(checks.widths(h, f'model.hidden[{i}]', 'hidden width',
                               empty='give one or more widths per layer, e.g. (100, 100)')
                 for i, h in enumerate(hidden))
  return HierarchicalVAE(input_shape=tuple(int(s) for s in feature_shape), hidden=hidden,
                         latents=latents, activation=cfg.activation, likelihood=cfg.likelihood,
                         output_bias=output_bias)
