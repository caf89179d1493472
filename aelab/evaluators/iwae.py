"""Evaluator 'iwae': the importance-weighted bound (IWAE; Burda, Grosse & Salakhutdinov 2016)
of a VAE on held-out data.

With w_i = p(x, z_i) / q(z_i | x) and z_1..z_k ~ q(z | x):

    L_k = log (1/k) sum_i w_i  (log-mean-exp)   ELBO = L_1 <= E[L_k] <= log p(x),

and L_k -> log p(x) as k grows, so -L_k is an estimate (an upper bound in expectation) of the
negative test log-likelihood in nats. It reports, per example averaged over the split (logged
as <split>/<name>):

  iwae_nll        -L_k with k = samples
  iwae_neg_elbo   minus the mean of log w_i over the same k samples (the ELBO, estimated with k
                  samples instead of one), so iwae_nll <= iwae_neg_elbo example by example
  iwae_k, iwae_chunk, iwae_examples   the k used, samples per jitted pass, examples evaluated
  active_units    code units whose posterior mean varies over the split (variance > 0.01, Burda
                  et al.'s measure): fewer than the code's width is posterior collapse

The k samples are drawn in chunks inside one jitted `lax.scan` (running logsumexp), so memory
is bounded by `memory_mb` whatever k is. With dynamic binarization the split is binarized once
per batch with a fixed key (the figure is then for that binarized test set).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from aelab.config import checks
from aelab.errors import AelabError
from aelab.evaluators.context import Context, split_of
from aelab.trainer import distributed

ACTIVE = 0.01  # a unit is active when its posterior mean's variance over the split exceeds this
OPTIONS = dict(
    split='test', every=0,
    samples=5000,     # k (5000 in the literature)
    batch_size=100,   # examples per jitted call
    memory_mb=256,    # budget for one chunk of samples' activations; sets the chunk size over k
    examples=0,       # evaluate the first N examples of the split; 0 = all of it
)


def chunk_size(forward, params, prep, x_example: np.ndarray, k: int, batch_size: int,
               memory_mb: int) -> int:
  """Samples per pass so that batch_size * chunk * (bytes of one forward's activations) fits.

  The activations of one example are measured with jax.eval_shape of the forward pass (the
  model's aux: every hidden layer, logits, z) and counted three times over (logits,
  log-likelihood terms and the decoder's hidden layers live together); a rough, safe estimate.
  """
  batch = {'x': jnp.asarray(x_example[:1])}
  out = jax.eval_shape(lambda p: forward.outputs(p, prep, batch, jax.random.PRNGKey(0),
                                                 train=False), params)
  per_sample = 3 * 4 * sum(math.prod(a.shape) for a in jax.tree.leaves(out.aux))
  return int(max(1, min(k, memory_mb * 2**20 // max(1, per_sample * batch_size))))


def make_step(forward, k: int, chunk: int):
  """jit(params, prep, x, rng) -> (L_k [B], mean log w [B]); k samples in chunks of `chunk`."""
  full, rest = divmod(k, chunk)

  @jax.jit
  def step(params, prep, x, rng):
    k_input, k_scan, k_rest = jax.random.split(rng, 3)
    z, _, _ = forward.noise.prepare(prep, x, k_input, corrupt=False)

    def body(carry, key):
      lse, total = carry
      lw = forward.log_weights(params, z, key, chunk)
      return (jnp.logaddexp(lse, jax.nn.logsumexp(lw, axis=1)), total + jnp.sum(lw, axis=1)), None

    init = (jnp.full((x.shape[0],), -jnp.inf), jnp.zeros((x.shape[0],)))
    (lse, total), _ = jax.lax.scan(body, init, jax.random.split(k_scan, full))
    if rest:
      lw = forward.log_weights(params, z, k_rest, rest)
      lse, total = jnp.logaddexp(lse, jax.nn.logsumexp(lw, axis=1)), total + jnp.sum(lw, axis=1)
    return lse - math.log(k), total / k

  return step


class Evaluator:
  def __init__(self, ctx: Context, split: str, samples: int, batch_size: int, memory_mb: int,
               examples: int, seed: int = 1):
    for key, value in dict(samples=samples, batch_size=batch_size, memory_mb=memory_mb).items():
      checks.integer(value, f'the iwae evaluator\'s {key}', low=1, high=checks.INT32_MAX)
    checks.integer(examples, 'the iwae evaluator\'s examples', low=0, hint=' (0: the whole split)')
    if not hasattr(ctx.forward.model, 'log_weights'):
      raise AelabError(f'the iwae evaluator needs a model with a likelihood (log_weights: a '
                       f'VAE); this model ({type(ctx.forward.model).__name__}) has none. Remove '
                       'evals.iwae or set its every to -1.')
    x = split_of(ctx.dataset, split).x
    self.x = x[:examples] if examples else x
    self.forward, self.k, self.seed = ctx.forward, samples, seed
    self.batch_size, self.memory_mb = min(batch_size, max(len(self.x), 1)), memory_mb

  def __call__(self, state, prep) -> dict[str, float]:
    """IWAE and k-sample ELBO figures (nats per example); see the module docstring."""
    x = self.x
    if not len(x):
      return {}
    params, prep = distributed.local((state.params, prep))  # each process computes it alone
    chunk = chunk_size(self.forward, params, prep, x, self.k, self.batch_size, self.memory_mb)
    step = make_step(self.forward, self.k, chunk)
    bounds, elbos = [], []
    for index, start in enumerate(range(0, len(x), self.batch_size)):
      rng = jax.random.fold_in(jax.random.PRNGKey(self.seed), index)
      bound, elbo = step(params, prep, jnp.asarray(x[start:start + self.batch_size]), rng)
      bounds.append(bound)
      elbos.append(elbo)
    bounds, elbos = (np.concatenate(jax.device_get(v)).astype(np.float64) for v in (bounds, elbos))
    return {'iwae_nll': float(-bounds.mean()), 'iwae_neg_elbo': float(-elbos.mean()),
            'iwae_k': self.k, 'iwae_chunk': chunk, 'iwae_examples': len(x),
            'active_units': self._active_units(params, prep)}

  def _active_units(self, params, prep) -> int:
    encode = jax.jit(self.forward.encode)
    means = np.concatenate([np.asarray(encode(params, prep, jnp.asarray(self.x[i:i + 1000])))
                            for i in range(0, len(self.x), 1000)])
    return int(np.sum(means.reshape(len(means), -1).var(axis=0) > ACTIVE))
