"""Evaluation on a held-out split: loss terms, and errors in input units (preprocessing inverted).

Metrics (per split):
  loss, <term>   the training objective and each term, averaged over eval batches;
  mse            mean squared error per element, in input units;
  bce            binary cross-entropy per element in input units (only for data in [0, 1]);
  r2             1 - SSE / SST with SST = sum (x - mean_of_split)^2: the fraction of the data's
                 variation the reconstruction carries (near 0 for an AE that outputs the mean);
  code_mean      mean activation of the code (for a VAE: of the posterior mean);
  code_near_zero fraction of code activations with |h| < 1e-2 (sparsity made visible);
  noisy_loss, noisy_mse, noisy_bce, noisy_r2
                 with a configured corruption (input_noise): the same figures for the
                 reconstruction of corrupted inputs against the clean ones (what a denoiser is for).

Randomness (VAE samples, binarization, corruption) uses fixed keys: batch i of a split uses
fold_in(PRNGKey(0), i), so two models evaluated with the same eval batch size see the same
corrupted inputs. With dynamic binarization the loss terms are computed against a Bernoulli sample
of each input, while mse / bce / r2 compare with the grey-level input itself (bce against the grey
level is the expected bce over binarizations).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from aelab import preprocessing
from aelab.trainer import sharding

_EPS = 1e-7
NEAR_ZERO = 1e-2


def code_statistics(code: jax.Array) -> dict[str, jax.Array]:
  """Mean activation of the code and the fraction of its activations with |h| < NEAR_ZERO."""
  return {'code_mean': jnp.mean(code),
          'code_near_zero': jnp.mean((jnp.abs(code) < NEAR_ZERO).astype(jnp.float32))}


def make_eval_step(forward: Callable, mode: str, unit_interval: bool,
                   noisy: bool = False) -> Callable:
  """forward(params, stats, x, rng, train, ...) -> (total, (terms, recon, ctx)); a jitted step.

  noisy: also evaluate the reconstruction of corrupted inputs (forward(..., corrupt=True)).
  """

  def error_sums(x, recon, ctx, stats, prefix=''):
    x_hat = preprocessing.invert(mode, stats, recon, ctx)
    sums = {prefix + 'sse': jnp.sum((x_hat - x) ** 2)}
    if unit_interval:
      p = jnp.clip(x_hat, _EPS, 1 - _EPS)
      sums[prefix + 'bce'] = -jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log1p(-p))
    return sums

  @jax.jit
  def eval_step(params, stats, x, mu, index=0):
    rng = jax.random.fold_in(jax.random.PRNGKey(0), index)
    total, (terms, recon, ctx) = forward(params, stats, x, rng, False)
    sums = {**error_sums(x, recon, ctx, stats), 'sst': jnp.sum((x - mu) ** 2)}
    metrics = {'loss': total, **terms}
    if noisy:
      total_n, (_, recon_n, ctx_n) = forward(params, stats, x, rng, False, corrupt=True)
      sums.update(error_sums(x, recon_n, ctx_n, stats, 'noisy_'))
      metrics['noisy_loss'] = total_n
    return metrics, sums

  return eval_step


def evaluate(eval_step: Callable, params, stats, x: np.ndarray, batch_size: int,
             mesh: Mesh) -> dict[str, float]:
  """Runs `eval_step` over `x` in batches; batch-mean terms are weighted by batch size."""
  mu = np.mean(x.astype(np.float64), axis=0).astype(np.float32)
  mu_dev = sharding.put(mu, sharding.replicated(mesh))
  n_dev = mesh.devices.size
  term_sums, totals = {}, {}
  for index, start in enumerate(range(0, len(x), batch_size)):
    xb = x[start:start + batch_size]
    spec = sharding.batch_sharding(mesh) if len(xb) % n_dev == 0 else sharding.replicated(mesh)
    terms, sums = eval_step(params, stats, sharding.put(xb, spec), mu_dev, index)
    for k, v in terms.items():
      term_sums[k] = term_sums.get(k, 0.0) + v * len(xb)
    for k, v in sums.items():
      totals[k] = totals.get(k, 0.0) + v
  term_sums, totals = jax.device_get((term_sums, totals))
  n, elems = len(x), x.size
  out = {k: float(v) / n for k, v in term_sums.items()}
  out['mse'] = float(totals['sse']) / elems
  out['r2'] = 1.0 - float(totals['sse']) / max(float(totals['sst']), 1e-30)
  if 'bce' in totals:
    out['bce'] = float(totals['bce']) / elems
  if 'noisy_sse' in totals:
    out['noisy_mse'] = float(totals['noisy_sse']) / elems
    out['noisy_r2'] = 1.0 - float(totals['noisy_sse']) / max(float(totals['sst']), 1e-30)
    if 'noisy_bce' in totals:
      out['noisy_bce'] = float(totals['noisy_bce']) / elems
  return out
