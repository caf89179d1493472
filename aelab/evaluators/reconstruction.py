"""Evaluator 'reconstruction': loss terms and errors in input units on one split.

Metrics (logged as <split>/<name>):
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
fold_in(PRNGKey(0), i), so two models evaluated with the same batch size see the same corrupted
inputs. With dynamic binarization the loss terms are computed against a Bernoulli sample of each
input, while mse / bce / r2 compare with the grey-level input itself (bce against the grey level
is the expected bce over binarizations).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from aelab.errors import AelabError
from aelab.evaluators.context import Context, run_batches, split_of
from aelab.trainer import sharding

OPTIONS = dict(split='val', every=0, batch_size=1000)
_EPS = 1e-7


@functools.lru_cache(maxsize=None)
def _eval_step(forward, unit_interval: bool, noisy: bool):
  """One jitted step per forward pass, shared by every split evaluated with it."""

  def error_sums(prep, x, recon, ctx, prefix=''):
    x_hat = prep.invert(recon, ctx)
    sums = {prefix + 'sse': jnp.sum((x_hat - x) ** 2)}
    if unit_interval:
      p = jnp.clip(x_hat, _EPS, 1 - _EPS)
      sums[prefix + 'bce'] = -jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log1p(-p))
    return sums

  @jax.jit
  def step(params, prep, batch, mu, stats, index=0):
    rng = jax.random.fold_in(jax.random.PRNGKey(0), index)
    x = batch['x']
    total, (terms, recon, ctx, _) = forward(params, prep, batch, rng, False, stats=stats)
    sums = {**error_sums(prep, x, recon, ctx), 'sst': jnp.sum((x - mu) ** 2)}
    metrics = {'loss': total, **terms}
    if noisy:
      total_n, (_, recon_n, ctx_n, _) = forward(params, prep, batch, rng, False, corrupt=True,
                                                stats=stats)
      sums.update(error_sums(prep, x, recon_n, ctx_n, 'noisy_'))
      metrics['noisy_loss'] = total_n
    return metrics, sums

  return step


def _ratios(totals: dict, n_elements: int) -> dict[str, float]:
  out = {'mse': float(totals['sse']) / n_elements,
         'r2': 1.0 - float(totals['sse']) / max(float(totals['sst']), 1e-30)}
  if 'bce' in totals:
    out['bce'] = float(totals['bce']) / n_elements
  if 'noisy_sse' in totals:
    out['noisy_mse'] = float(totals['noisy_sse']) / n_elements
    out['noisy_r2'] = 1.0 - float(totals['noisy_sse']) / max(float(totals['sst']), 1e-30)
    if 'noisy_bce' in totals:
      out['noisy_bce'] = float(totals['noisy_bce']) / n_elements
  return out


class Evaluator:
  def __init__(self, ctx: Context, split: str, batch_size: int):
    self.split, self.batch_size, self.mesh = split, batch_size, ctx.mesh
    if not ctx.forward.model.RECONSTRUCTS:
      raise AelabError(f'the reconstruction evaluator needs a model that reconstructs its input; '
                       f'model {ctx.config.model.name!r} does not (use type classification)')
    self.data = split_of(ctx.dataset, split)
    self.step = _eval_step(ctx.forward, ctx.unit_interval, ctx.forward.noise.corrupts)

  def __call__(self, state, prep) -> dict[str, float]:
    """Batch-mean terms weighted by batch size, error sums over the whole split."""
    x = self.data.x
    if not len(x):
      return {}
    mu = np.mean(x.astype(np.float64), axis=0).astype(np.float32)
    mu_dev = sharding.put(mu, sharding.replicated(self.mesh))
    terms, totals = run_batches(self.step, state.params, prep, self.data, self.batch_size,
                                self.mesh, mu_dev, state.stats)
    return {**terms, **_ratios(totals, x.size)}
