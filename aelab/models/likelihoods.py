"""The discretized logistic likelihood of 8-bit data (PixelCNN++, Salimans et al. 2017): x in
[0, 1] on 256 levels, each level's probability the mass of a logistic(mean, scale) on its bin of
width 1/255, the two end bins taking the tails; and a decoder's output bias at the data's mean."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

OUTPUT_BIASES = ('zeros', 'data')
LEVELS = 256
_HALF = 0.5 / (LEVELS - 1)   # half a bin


def discretized_logistic(mean: jax.Array, log_scale: jax.Array, x: jax.Array) -> jax.Array:
  """log P(x | mean, exp(log_scale)) per element, x in [0, 1] on LEVELS levels; finite for any
  mean (the tails in log-sigmoid form, the density at the bin centre where a bin's mass
  underflows)."""
  centred, inv = x - mean, jnp.exp(-log_scale)
  plus, minus = (centred + _HALF) * inv, (centred - _HALF) * inv
  log_cdf_plus = plus - jax.nn.softplus(plus)            # log sigmoid(plus): the lowest bin
  log_survival_minus = -jax.nn.softplus(minus)           # log (1 - sigmoid(minus)): the highest
  delta = jax.nn.sigmoid(plus) - jax.nn.sigmoid(minus)
  mid = centred * inv
  log_density_mid = mid - log_scale - 2.0 * jax.nn.softplus(mid) + math.log(2 * _HALF)
  inner = jnp.where(delta > 1e-5, jnp.log(jnp.maximum(delta, 1e-12)), log_density_mid)
  return jnp.where(x < _HALF, log_cdf_plus, jnp.where(x > 1.0 - _HALF, log_survival_minus, inner))


def output_bias(rows, likelihood: str) -> np.ndarray:
  """The decoder output's bias [D] that makes its output the training rows' mean at init: the
  mean's logits for Bernoulli (clipped to [0.001, 0.999], as Burda et al.'s IWAE code does), the
  mean itself for the Gaussian and logistic means. A decoder starting from zeros spends its
  first steps learning this through every layer, the encoder's included, which can saturate a
  tanh encoder for good (a two-layer VAE whose codes never recover)."""
  x = np.asarray(rows, np.float64)
  mean = x.reshape(len(x), -1).mean(axis=0)
  if likelihood == 'bernoulli':
    mean = np.clip(mean, 0.001, 0.999)
    mean = np.log(mean) - np.log1p(-mean)
  return mean.astype(np.float32)
