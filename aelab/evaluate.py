"""Evaluation on a held-out split: loss terms, and errors in input units (preprocessing inverted).

Metrics (per split):
  loss, <term>   the training objective and each term, averaged over eval batches;
  mse            mean squared error per element, in input units;
  bce            binary cross-entropy per element in input units (only for data in [0, 1]);
  r2             1 - SSE / SST with SST = sum (x - mean_of_split)^2: the fraction of the data's
                 variation the reconstruction carries (near 0 for an AE that outputs the mean).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from aelab import preprocessing, sharding

_EPS = 1e-7


def make_eval_step(forward: Callable, mode: str, unit_interval: bool) -> Callable:
  """forward(params, stats, x, rng, train) -> (total, (terms, recon, ctx)); returns a jitted step."""

  @jax.jit
  def eval_step(params, stats, x, mu):
    total, (terms, recon, ctx) = forward(params, stats, x, jax.random.PRNGKey(0), False)
    x_hat = preprocessing.invert(mode, stats, recon, ctx)
    sums = {
        'sse': jnp.sum((x_hat - x) ** 2),
        'sst': jnp.sum((x - mu) ** 2),
    }
    if unit_interval:
      p = jnp.clip(x_hat, _EPS, 1 - _EPS)
      sums['bce'] = -jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log1p(-p))
    return {'loss': total, **terms}, sums

  return eval_step


def evaluate(eval_step: Callable, params, stats, x: np.ndarray, batch_size: int,
             mesh: Mesh) -> dict[str, float]:
  """Runs `eval_step` over `x` in batches; batch-mean terms are weighted by batch size."""
  mu = np.mean(x.astype(np.float64), axis=0).astype(np.float32)
  mu_dev = sharding.put(mu, sharding.replicated(mesh))
  n_dev = mesh.devices.size
  term_sums, totals = {}, {}
  for start in range(0, len(x), batch_size):
    xb = x[start:start + batch_size]
    spec = sharding.batch_sharding(mesh) if len(xb) % n_dev == 0 else sharding.replicated(mesh)
    terms, sums = eval_step(params, stats, sharding.put(xb, spec), mu_dev)
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
  return out
