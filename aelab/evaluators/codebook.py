"""Evaluator 'codebook': how a vector-quantised model (aelab/models/vqvae.py) uses its codebook
on one split, counted over every vector of every example of the split.

Metrics (logged as <split>/<name>):
  codebook_perplexity  exp of the entropy of the split's code usage: K when every code is used
                       equally often, 1 when one code takes every vector;
  codebook_usage       the fraction of the K codes used at least once on the split;
  codebook_dead        the number of codes used by no vector of the split.
Randomness (binarization) uses fixed keys: batch i uses fold_in(PRNGKey(0), i), as the
reconstruction evaluator does.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from aelab.errors import AelabError
from aelab.evaluators.context import Context, run_batches, split_of

OPTIONS = dict(split='test', every=0, batch_size=1000)  # perplexity, usage, dead codes


@functools.lru_cache(maxsize=None)
def _eval_step(forward, codes: int):

  @jax.jit
  def step(params, prep, batch, index=0):
    rng = jax.random.fold_in(jax.random.PRNGKey(0), index)
    p = forward.outputs(params, prep, batch, rng, train=False)
    onehot = jax.nn.one_hot(p.aux['indices'].reshape(-1), codes, dtype=jnp.int32)
    return {}, {'counts': jnp.sum(onehot, axis=0)}

  return step


def usage(counts: np.ndarray) -> dict[str, float]:
  """The metrics of per-code counts [K] (see the module docstring)."""
  counts = np.asarray(counts, np.float64)
  p = counts[counts > 0] / counts.sum()
  return {'codebook_perplexity': float(np.exp(-np.sum(p * np.log(p)))),
          'codebook_usage': float(np.mean(counts > 0)),
          'codebook_dead': float(np.sum(counts == 0))}


class Evaluator:
  def __init__(self, ctx: Context, split: str, batch_size: int):
    model = ctx.forward.model
    if not hasattr(model, 'codebook_size'):
      raise AelabError(f'the codebook evaluator needs a model with a codebook (e.g. model vqvae); '
                       f'this model ({type(model).__name__}) has none. Remove its evals entry or '
                       'set its every to -1.')
    self.ctx, self.batch_size = ctx, batch_size
    self.data = split_of(ctx.dataset, split)
    self.step = _eval_step(ctx.forward, model.codebook_size())

  def __call__(self, state, prep) -> dict[str, float]:
    if not len(self.data):
      return {}
    _, totals = run_batches(self.step, state.params, prep, self.data, self.batch_size,
                            self.ctx.mesh)
    return usage(totals['counts'])
