"""Loss terms of sparse dictionaries (aelab/models/sae.py), read from the model's aux: normalized
reconstruction error, the L1 and L0 sparsity penalties, AuxK for dead latents, a gated
dictionary's two terms and a Matryoshka dictionary's nested reconstructions."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from aelab.config import checks
from aelab.errors import AelabError
from aelab.losses.terms import Outputs, term
from aelab.models.sae import keep_top_k

_EPS = 1e-12


def _flat(a: jax.Array) -> jax.Array:
  return a.reshape(a.shape[0], -1)


def _aux(out: Outputs, key: str, name: str, what: str = '') -> jax.Array:
  """out.aux[key], or a one-line error: `name` needs `what` (a sparse dictionary by default)."""
  if key not in out.aux:
    what = what or f'a sparse dictionary (a model whose aux has {key!r}, e.g. model sae)'
    raise AelabError(f'loss term {name} needs {what}; this model\'s aux has '
                     f'{", ".join(sorted(out.aux)) or "nothing"}')
  return out.aux[key]


_GATED = "a gated dictionary (model sae with activation 'gated')"


def _normalized(err: jax.Array, target: jax.Array) -> jax.Array:
  """sum ||err||^2 / sum ||target - its batch mean||^2."""
  total = jnp.sum(jnp.square(target - jnp.mean(target, axis=0)))
  return jnp.sum(jnp.square(err)) / jnp.maximum(total, _EPS)


@term
def normalized_mse(out: Outputs) -> jax.Array:
  """||x - x_hat||^2 / ||x - mean(x)||^2 over the batch: 1 - the fraction of variance explained."""
  return _normalized(_flat(out.recon) - _flat(out.x), _flat(out.x))


@term
def sae_l1(out: Outputs) -> jax.Array:
  """Mean over the batch of sum_j |f_j| ||W_dec_j|| (each latent's L1 times its decoder row's
  norm: a latent cannot buy sparsity by shrinking its code and growing its decoder row)."""
  f = _aux(out, 'code', 'sae_l1')
  norms = jnp.linalg.norm(_aux(out, 'dictionary', 'sae_l1'), axis=1)
  return jnp.mean(jnp.sum(jnp.abs(f) * norms, axis=-1))


@term
def sae_l0(out: Outputs) -> jax.Array:
  """Mean active latents per example; for JumpReLU its gradient reaches the thresholds through
  the straight-through estimator."""
  return jnp.mean(_aux(out, 'l0', 'sae_l0'))


def _check_auxk(k: int = 512) -> None:
  checks.integer(k, 'auxk k', low=1, high=checks.INT32_MAX,
                 hint=' (the number of dead latents that reconstruct the residual)')


@term(check=_check_auxk)
def auxk(out: Outputs, k: int = 512) -> jax.Array:
  """Gao et al.'s auxiliary loss: the top `k` dead latents (silent for model.dead_steps steps) of
  each example reconstruct the main reconstruction's residual e = x - x_hat (held fixed),
  normalized: ||e - e_hat||^2 / ||e - mean(e)||^2; 0 when no latent is dead (its top-k and
  decoder pass are then skipped) or where the state's stats are not given."""
  pre, w_dec = _aux(out, 'pre', 'auxk'), _aux(out, 'dictionary', 'auxk')
  dead = out.aux.get('dead')
  if dead is None:
    return jnp.zeros((), jnp.float32)
  e = jax.lax.stop_gradient(_flat(out.x) - _flat(out.recon))

  def loss(_):
    f = keep_top_k(jnp.where(dead, jax.nn.relu(pre), 0.0), min(int(k), pre.shape[-1]))
    return _normalized(f @ w_dec - e, e)

  zero = jnp.zeros((), jnp.result_type(pre, w_dec, e))  # the dtype of the loss (float64 in x64)
  return jax.lax.cond(jnp.any(dead), loss, lambda _: zero, None)


@term
def gated_l1(out: Outputs) -> jax.Array:
  """A gated dictionary's sparsity penalty (Rajamanoharan et al. 2024): mean over the batch of
  sum_j relu(pi_gate_j) ||W_dec_j||, on the gate's pre-activations, not the code. The norms are
  held fixed: 1 with normalize_decoder (the paper's unit-norm decoder, a plain L1); with free
  norms, frozen here as the decoder is in gated_aux, one of the two pairings the paper's first
  author advises (the other, SAELens's, trains the decoder through both)."""
  gate = _aux(out, 'gate', 'gated_l1', _GATED)
  norms = jax.lax.stop_gradient(jnp.linalg.norm(_aux(out, 'dictionary', 'gated_l1'), axis=1))
  return jnp.mean(jnp.sum(gate * norms, axis=-1))


@term
def gated_aux(out: Outputs) -> jax.Array:
  """A gated dictionary's auxiliary reconstruction (Rajamanoharan et al. 2024): the gate alone,
  relu(pi_gate), reconstructs x through the decoder held fixed (stop_gradient on W_dec and on
  b_dec as the output bias): ||x - x_hat_frozen||^2 / ||x - mean(x)||^2, normalized as
  normalized_mse so that at weight 1 it stands to it as the paper's L_aux to its L_reconstruct.
  With gated_l1, the gate's only gradient (the Heaviside in the code passes none)."""
  recon = _flat(_aux(out, 'gate_recon', 'gated_aux', _GATED))
  return _normalized(recon - _flat(out.x), _flat(out.x))


@term
def matryoshka_mse(out: Outputs) -> jax.Array:
  """The nested reconstructions of a Matryoshka dictionary (Bussmann et al. 2025): the sum over
  the prefixes m of model.matryoshka_widths, the whole dictionary the last, of the normalized MSE
  of x_hat_m = f[:, :m] W_dec[:m] + b_dec (each term as normalized_mse; SAELens and the paper sum
  the levels). It holds the whole dictionary's reconstruction: use it instead of normalized_mse."""
  prefixes = _aux(out, 'matryoshka', 'matryoshka_mse',
                  'a Matryoshka dictionary (model sae with matryoshka_widths)')
  x = _flat(out.x)
  return _normalized(prefixes.reshape(-1, *x.shape) - x, x)  # one denominator: the sum of levels
