"""Loss terms of the disentangling VAEs, as google-research/disentanglement_lib defines them
(methods/unsupervised/vae.py), each added to a VAE's reconstruction + vae_kl:

  AnnealedVAE   kl_capacity, weight gamma (1000): |KL - C(t)|, C ramping linearly to `capacity`
  beta-TCVAE    total_correlation, weight beta - 1: the code's total correlation (minibatch
                weighted sampling)
  DIP-VAE-I/II  dip, weight lambda_od: the covariance of the codes pushed to the identity
  FactorVAE     factor_tc, weight gamma: the discriminator's estimate of the total correlation;
                discriminator (weight 1): the discriminator's own cross-entropy, whose gradient
                reaches only its parameters (aelab/models/factor_vae.py)

Each is `fn(out, **options) -> scalar`, unweighted, to be minimised.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from aelab.config import checks
from aelab.errors import AelabError
from aelab.losses.terms import Outputs, term, vae_kl

DIP_KINDS = ('i', 'ii')
_LOG_2PI = math.log(2 * math.pi)


def _posterior(out: Outputs, name: str, *keys: str) -> tuple[jax.Array, ...]:
  missing = [k for k in keys if k not in out.aux]
  if missing:
    raise AelabError(f"{name} needs a VAE's aux[{', '.join(map(repr, missing))}]; this model's "
                     f'aux has {", ".join(sorted(out.aux)) or "nothing"}')
  return tuple(out.aux[k] for k in keys)


def _check_capacity(capacity: float = 25.0, steps: int = 100000) -> None:
  checks.number(capacity, 'kl_capacity capacity', low=0.0, hint=' (C_max, in nats)')
  checks.integer(steps, 'kl_capacity steps', low=1, high=checks.INT32_MAX,
                 hint=' (the steps over which C ramps from 0 to capacity)')


@term(check=_check_capacity)
def kl_capacity(out: Outputs, capacity: float = 25.0, steps: int = 100000) -> jax.Array:
  """|KL(q(z|x) || N(0, I)) - C| with C = min(capacity, capacity * step / steps) (Burgess et al.
  2018's capacity, annealed linearly; disentanglement_lib's AnnealedVAE: c_max 25, iteration
  threshold 100000, gamma 1000 as the weight). KL is vae_kl's (the batch mean). Outside
  training (no step) C = capacity."""
  kl = vae_kl(out)
  if out.step is None:
    c = jnp.float32(capacity)
  else:
    c = jnp.minimum(capacity, capacity * jnp.asarray(out.step, jnp.float32) / steps)
  return jnp.abs(kl - c)


def gaussian_log_density(z: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """Elementwise log N(z; mean, exp(logvar))."""
  return -0.5 * (_LOG_2PI + logvar + jnp.square(z - mean) * jnp.exp(-logvar))


@term
def total_correlation(out: Outputs) -> jax.Array:
  """The total correlation KL(q(z) || prod_j q(z_j)) of the batch's draws by minibatch weighted
  sampling (Chen et al. 2018), as disentanglement_lib computes it: with
  L[i, k, j] = log q(z_i,j | x_k),
    log q(z_i) ~ logsumexp_k sum_j L[i, k, j],   log prod_j q(z_i,j) ~ sum_j logsumexp_k L[i, k, j],
  the mean over i of their difference. The normalising constants (log of batch and dataset size)
  are left out, as there: they shift the value by (L - 1) log(N B), not the gradient. beta-TCVAE
  is reconstruction + vae_kl + (beta - 1) total_correlation."""
  z, mean, logvar = _posterior(out, 'total_correlation', 'z', 'mean', 'logvar')
  log_q = gaussian_log_density(z[:, None, :], mean[None, :, :], logvar[None, :, :])  # [B, B, L]
  log_qz = jax.nn.logsumexp(jnp.sum(log_q, axis=2), axis=1)
  log_qz_product = jnp.sum(jax.nn.logsumexp(log_q, axis=1), axis=1)
  return jnp.mean(log_qz - log_qz_product)


def _check_dip(kind: str = 'ii', diagonal: float = 1.0) -> None:
  checks.choice(kind, DIP_KINDS, 'dip kind')
  checks.number(diagonal, 'dip diagonal', low=0.0, hint=' (lambda_d / lambda_od)')


@term(check=_check_dip)
def dip(out: Outputs, kind: str = 'ii', diagonal: float = 1.0) -> jax.Array:
  """DIP-VAE (Kumar et al. 2018): sum_{i != j} C_ij^2 + diagonal * sum_i (C_ii - 1)^2, C the
  covariance of the posterior means over the batch (kind 'i') or of the codes,
  C = Cov[mean] + E[diag exp(logvar)] (kind 'ii'), as disentanglement_lib (the biased
  covariance). Its weight is lambda_od; `diagonal` is lambda_d / lambda_od (disentanglement_lib:
  10 for DIP-VAE-I, 1 for DIP-VAE-II)."""
  mean, logvar = _posterior(out, 'dip', 'mean', 'logvar')
  centred = mean - jnp.mean(mean, axis=0)
  cov = centred.T @ centred / mean.shape[0]
  if kind == 'ii':
    cov = cov + jnp.diag(jnp.mean(jnp.exp(logvar), axis=0))
  diag = jnp.diagonal(cov)
  off = cov - jnp.diag(diag)
  return jnp.sum(jnp.square(off)) + diagonal * jnp.sum(jnp.square(diag - 1.0))


@term
def factor_tc(out: Outputs) -> jax.Array:
  """FactorVAE's total correlation estimate, the batch mean of D's logit difference
  logit_0(z) - logit_1(z) = log D(z) / (1 - D(z)) at the draws z (Kim & Mnih 2018), with D's
  parameters held: its gradient reaches the VAE only. Its weight is gamma."""
  (logits,) = _posterior(out, 'factor_tc (a FactorVAE, model factor_vae)', 'tc_logits')
  return jnp.mean(logits[:, 0] - logits[:, 1])


@term
def discriminator(out: Outputs) -> jax.Array:
  """The discriminator's cross-entropy: -(mean log D(z) + mean log (1 - D(z_perm))) / 2 on the
  batch's draws and their dimension-wise permutation, both held (disentanglement_lib's
  discr_loss, negated); its gradient reaches the discriminator only (model factor_vae)."""
  real, permuted = _posterior(out, 'discriminator (a FactorVAE, model factor_vae)',
                              'discriminator_real', 'discriminator_permuted')
  return -0.5 * (jnp.mean(jax.nn.log_softmax(real)[:, 0])
                 + jnp.mean(jax.nn.log_softmax(permuted)[:, 1]))
