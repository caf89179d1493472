"""FactorVAE (Kim & Mnih 2018): the VAE of aelab/models/vae.py and a discriminator D that tells
the codes z ~ q(z|x) of a batch from the same codes with each dimension permuted across the
batch independently (draws of the product of the marginals, prod_j q(z_j)). The total
correlation of q(z) is estimated by the density-ratio trick as E[log D(z) - log (1 - D(z))].

As disentanglement_lib's `fc_discriminator`: `discriminator` dense widths (6 x 1000), each
followed by a leaky ReLU (slope 0.2), then 2 logits; class 0 = "a code of the batch", class 1 =
"a permuted code". All in the one parameter 'discriminator' (its own parameter group, trained by
its own optimizer: config.optimizer.groups.discriminator, aelab/trainer/optim.py).

`__call__` adds to the VAE's aux, each [B, 2]:
  'tc_logits'             D at the draws z with D's parameters held (stop_gradient): the
                          `factor_tc` term's gradient reaches the encoder, not D;
  'discriminator_real'    D at stop_gradient(z) and
  'discriminator_permuted' at the permuted stop_gradient(z): the `discriminator` term's
                          gradient reaches D only.
and aux['metrics']['discriminator_accuracy'] (logged with the loss terms). The permutation draws
from the 'noise' stream after the VAE's own draw, so the VAE's samples are a plain VAE's.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from aelab.config import checks
from aelab.models import vae

OPTIONS = dict(              # the VAE's (aelab/models/vae.py), and the discriminator's widths
    body='dense',
    hidden=(200, 200),
    channels=(32, 64),
    conv_hidden=(),
    kernel_size=3,
    latent=10,
    activation='relu',
    likelihood='bernoulli',
    discriminator=(1000, 1000, 1000, 1000, 1000, 1000),  # disentanglement_lib's 6 x 1000
)
LEAKY_SLOPE = 0.2  # tf.nn.leaky_relu's default, as disentanglement_lib's discriminator


class Discriminator(nn.Module):
  """z [B, L] -> logits [B, 2]; with frozen=True the same function with its parameters held."""
  widths: tuple[int, ...]

  @nn.compact
  def __call__(self, z: jax.Array, frozen: bool = False) -> jax.Array:
    hold = jax.lax.stop_gradient if frozen else (lambda a: a)
    h, n_in = z, z.shape[-1]
    for i, n_out in enumerate((*self.widths, 2)):
      kernel = self.param(f'kernel_{i + 1}', nn.initializers.lecun_normal(), (n_in, n_out))
      bias = self.param(f'bias_{i + 1}', nn.initializers.zeros_init(), (n_out,))
      h = h @ hold(kernel) + hold(bias)
      if i < len(self.widths):
        h = jax.nn.leaky_relu(h, LEAKY_SLOPE)
      n_in = n_out
    return h


def permute_dims(key: jax.Array, z: jax.Array) -> jax.Array:
  """z [B, L] with each column permuted across the batch independently (disentanglement_lib's
  shuffle_codes)."""
  order = jnp.argsort(jax.random.uniform(key, z.shape), axis=0)
  return jnp.take_along_axis(z, order, axis=0)


class FactorVAE(vae.VAE):
  discriminator: tuple[int, ...]

  def setup(self):
    super().setup()
    self.critic = Discriminator(self.discriminator, name='discriminator')

  def __call__(self, x: jax.Array, *, train: bool = False):
    recon, aux = super().__call__(x, train=train)
    z = aux['z']
    held = jax.lax.stop_gradient(z)
    real = self.critic(held)
    permuted = self.critic(permute_dims(self.make_rng('noise'), held))
    accuracy = 0.5 * (jnp.mean((real[:, 0] > real[:, 1]).astype(jnp.float32))
                      + jnp.mean((permuted[:, 1] > permuted[:, 0]).astype(jnp.float32)))
    aux.update(tc_logits=self.critic(z, frozen=True), discriminator_real=real,
               discriminator_permuted=permuted,
               metrics={'discriminator_accuracy': accuracy})
    return recon, aux

  @nn.nowrap
  def param_groups(self, names: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    groups = super().param_groups(names)
    return {**groups, 'discriminator': tuple(n for n in names if n == 'discriminator')}


def build(cfg: ml_collections.ConfigDict, feature_shape: Sequence[int]) -> FactorVAE:
  widths = checks.widths(cfg.discriminator, 'model.discriminator', 'discriminator width',
                         empty='give its dense widths, e.g. (1000,) * 6')
  return FactorVAE(**vae.fields(cfg, feature_shape), discriminator=widths)
