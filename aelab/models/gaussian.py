"""Diagonal Gaussians as the latent-variable models use them: log densities, reparameterised
draws, and the importance weights of the IWAE bound from a model's three methods."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

LOG_2PI = math.log(2 * math.pi)


def log_normal(z: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """log N(z; mean, diag exp(logvar)), summed over the last axis."""
  return -0.5 * jnp.sum(jnp.square(z - mean) * jnp.exp(-logvar) + logvar + LOG_2PI, axis=-1)


def log_standard_normal(z: jax.Array) -> jax.Array:
  """log N(z; 0, I), summed over the last axis."""
  return -0.5 * jnp.sum(jnp.square(z) + LOG_2PI, axis=-1)


def draw(rng: jax.Array, mean: jax.Array, logvar: jax.Array, k: int | None = None) -> jax.Array:
  """mean + exp(logvar / 2) * eps, eps ~ N(0, I): one draw, or k draws stacked first."""
  shape = mean.shape if k is None else (k, *mean.shape)
  return mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, shape, mean.dtype)
