"""VAE with a VampPrior (Tomczak & Welling 2018): the prior is the mixture of the encoder's
posteriors at K learned pseudo-inputs u_1..u_K,

    p(z) = (1/K) sum_k q(z | u_k),

the VAE of aelab/models/vae.py otherwise (the same encoder, decoder and likelihoods). The
pseudo-inputs are a parameter [K, features], clipped to [0, 1] for a Bernoulli decoder (the
paper's hardtanh), initialised at N(0.05, 0.01^2) as in the authors' code. The KL has no closed
form: train with reconstruction (bce, reduction 'sum') + kl_sample (log q(z|x) - log p(z) at the
one draw, aux['log_posterior'] and aux['log_prior']; the paper warms its weight up), or with the
iwae term. log_weights, log_joint and prior_codes use the mixture.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aelab.config import checks
from aelab.models import base, gaussian, vae

OPTIONS = dict(
    body='dense',
    hidden=(200, 200),       # dense body: encoder widths; the decoder mirrors them
    channels=(32, 64),       # conv body: encoder conv widths (stride 2 each)
    kernel_size=3,           # conv body
    latent=50,               # width of z
    activation='tanh',
    likelihood='bernoulli',  # 'bernoulli' or 'gaussian' (learned scalar std)
    output_bias='zeros',     # dense body: 'zeros', or 'data': the output starts at the
                             # training rows' mean (Bernoulli: its logits)
    pseudo_inputs=500,       # K, the mixture's components
)


def _pseudo_init(key, shape, dtype=jnp.float32):
  return 0.05 + 0.01 * jax.random.normal(key, shape, dtype)


class VampPrior(vae.VAE):
  pseudo_inputs: int

  def setup(self):
    super().setup()
    self.pseudo = self.param('pseudo_inputs', _pseudo_init, (self.pseudo_inputs, self.features))

  def _components(self) -> tuple[jax.Array, jax.Array]:
    """The mixture's means and log-variances [K, L]: the encoder at the pseudo-inputs."""
    u = jnp.clip(self.pseudo, 0.0, 1.0) if self.likelihood == 'bernoulli' else self.pseudo
    _, mean, logvar = self._posterior(u.reshape(self.pseudo_inputs, *self.input_shape))
    return mean, logvar

  def _log_prior(self, z: jax.Array) -> jax.Array:
    """log (1/K) sum_k N(z; mean_k, exp(logvar_k)) for z [..., L], as matmuls over the K
    components (no [..., K, L] intermediate)."""
    mean, logvar = self._components()
    inv = jnp.exp(-logvar)                                                # [K, L]
    flat = z.reshape(-1, z.shape[-1])
    quad = (jnp.square(flat) @ inv.T - 2.0 * flat @ (mean * inv).T
            + jnp.sum(jnp.square(mean) * inv + logvar + gaussian.LOG_2PI, axis=-1))
    log_k = jax.nn.logsumexp(-0.5 * quad, axis=-1) - math.log(self.pseudo_inputs)
    return log_k.reshape(z.shape[:-1])

  def prior_codes(self, n: int):
    """n draws of the mixture: a pseudo-input uniformly, then its posterior."""
    pick, draw = jax.random.split(self.make_rng('noise'))
    mean, logvar = self._components()
    index = jax.random.randint(pick, (n,), 0, self.pseudo_inputs)
    return gaussian.draw(draw, mean[index], logvar[index])

  def __call__(self, x: jax.Array, *, train: bool = False):
    recon, aux = super().__call__(x, train=train)
    aux['log_posterior'] = gaussian.log_normal(aux['z'], aux['mean'], aux['logvar'])
    aux['log_prior'] = self._log_prior(aux['z'])
    return recon, aux

  @nn.nowrap
  def export(self, params, stats) -> base.Export:
    out = super().export(params, stats)
    out.arrays['pseudo_inputs'] = np.asarray(params['pseudo_inputs'])
    out.about['pseudo_inputs'] = (
        f'pseudo_inputs, shape [{self.pseudo_inputs}, {self.features}]: the prior is the mixture '
        'of the posteriors q(z | u_k) at these rows' + (' clipped to [0, 1]' if
                                                         self.likelihood == 'bernoulli' else ''),)
    return out


def build(cfg: ml_collections.ConfigDict, feature_shape: Sequence[int]) -> VampPrior:
  checks.integer(cfg.pseudo_inputs, 'model.pseudo_inputs', low=1, high=checks.INT32_MAX,
                 hint=' (K, e.g. 500)')
  return VampPrior(**vae.fields(cfg, feature_shape), pseudo_inputs=int(cfg.pseudo_inputs))
