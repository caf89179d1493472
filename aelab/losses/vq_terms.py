"""Loss terms of the VQ-VAE (aelab/models/vqvae.py), read from its aux 'z_e' (the encoder's
vectors) and 'z_q' (their nearest codebook rows), both [B, P, D]:

    vq_commitment = mean_b sum_{p,d} (z_e - sg(z_q))^2   (weight beta; 0.25 in the paper)
    vq_codebook   = mean_b sum_{p,d} (sg(z_e) - z_q)^2   (moves the codebook: ema=False only)

sg is stop_gradient: the commitment term trains the encoder only, the codebook term the codebook
only. With a moving-average codebook (model.ema) the codebook gets no gradient and vq_codebook
trains nothing. Both sum over each example's vectors, like reconstruction with reduction='sum'.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from aelab.errors import AelabError
from aelab.losses.terms import Outputs, term


def _pair(out: Outputs, name: str) -> tuple[jax.Array, jax.Array]:
  if 'z_e' not in out.aux or 'z_q' not in out.aux:
    raise AelabError(f"loss term {name} needs a VQ-VAE's aux['z_e'] and aux['z_q'] (model "
                     f"vqvae); this model's aux has {', '.join(sorted(out.aux)) or 'nothing'}")
  return out.aux['z_e'], out.aux['z_q']


def _per_example(err: jax.Array) -> jax.Array:
  return jnp.mean(jnp.sum(err.reshape(err.shape[0], -1), axis=-1))


@term
def vq_commitment(out: Outputs) -> jax.Array:
  """Mean over the batch of sum ||z_e - sg(z_q)||^2: keeps the encoder near its codes."""
  z_e, z_q = _pair(out, 'vq_commitment')
  return _per_example(jnp.square(z_e - jax.lax.stop_gradient(z_q)))


@term
def vq_codebook(out: Outputs) -> jax.Array:
  """Mean over the batch of sum ||sg(z_e) - z_q||^2: moves each used code to its vectors."""
  z_e, z_q = _pair(out, 'vq_codebook')
  return _per_example(jnp.square(jax.lax.stop_gradient(z_e) - z_q))
