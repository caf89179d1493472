"""The gated encoder of a sparse dictionary, activation 'gated' of the `sae` kind (aelab/models/
sae.py; Rajamanoharan et al. 2024, "Improving dictionary learning with gated sparse
autoencoders"). Parameters as SAELens names them (sae_lens/saes/gated_sae.py): W_enc [d, n],
shared by both paths, and b_gate, r_mag, b_mag [n] (no b_enc), all three zeros at the start:

    pre = (x - b_dec) W_enc
    pi_gate = pre + b_gate                       f_gate = 1[pi_gate > 0]
    pi_mag = pre * exp(r_mag) + b_mag            (= (x - b_dec) (W_enc * exp(r_mag)) + b_mag)
    f = f_gate * relu(pi_mag)

The Heaviside gate passes no gradient: the reconstruction trains the magnitude path and the
decoder; the gate learns from the L1 of relu(pi_gate) (`gated_l1`) and from relu(pi_gate)
reconstructing x through the decoder held fixed (`gated_aux`; aelab/losses/sae_terms.py).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PARAMS = ('b_gate', 'r_mag', 'b_mag')   # each [n]


def encode(pre: jax.Array, b_gate: jax.Array, r_mag: jax.Array,
           b_mag: jax.Array) -> tuple[jax.Array, dict]:
  """(f, {'gate': relu(pi_gate), 'pre': pi_mag}) from pre = (x - b_dec) W_enc [B, n]."""
  pi_gate = pre + b_gate
  pi_mag = pre * jnp.exp(r_mag) + b_mag
  f = (pi_gate > 0).astype(pre.dtype) * nn.relu(pi_mag)
  return f, {'gate': nn.relu(pi_gate), 'pre': pi_mag}


def frozen_reconstruction(gate: jax.Array, w_dec: jax.Array, b_dec: jax.Array) -> jax.Array:
  """relu(pi_gate) @ W_dec + b_dec through the decoder held fixed (the paper's x_hat_frozen):
  gated_aux's gradient reaches neither W_dec nor the output bias b_dec, only the gate (and,
  through pre = (x - b_dec) W_enc, W_enc and the centering b_dec, as in the paper's code)."""
  return gate @ jax.lax.stop_gradient(w_dec) + jax.lax.stop_gradient(b_dec)


def export_arrays(params) -> dict[str, np.ndarray]:
  return {name: np.asarray(params[name]) for name in PARAMS}


def about(n: int) -> dict[str, str]:
  """One line per gated array."""
  return {'b_gate': f'b_gate, shape [{n}]: the gate\'s bias (latent j is on where pre_j + b_gate_j '
                    '> 0), one value per latent, one per line',
          'r_mag': f'r_mag, shape [{n}]: the magnitude path\'s log scale of W_enc\'s columns, one '
                   'value per latent, one per line',
          'b_mag': f'b_mag, shape [{n}]: the magnitude path\'s bias, one value per latent, one per '
                   'line'}


PRE = 'pre = (z - b_dec) @ W_enc'
CODE = 'f = (pre + b_gate > 0) * relu(pre * exp(r_mag) + b_mag)'
