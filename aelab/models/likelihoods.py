"""The discretized logistic likelihood of 8-bit data (PixelCNN++, Salimans et al. 2017): x in
[0, 1] on 256 levels, each level's probability the mass of a logistic(mean, scale) on its bin of
width 1/255, the two end bins taking the tails."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

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
