"""The importance-weighted bound (IWAE; Burda, Grosse & Salakhutdinov 2016) of a VAE on held-out data.

With w_i = p(x, z_i) / q(z_i | x) and z_1..z_k ~ q(z | x):

    L_k = log (1/k) sum_i w_i  (log-mean-exp)   ELBO = L_1 <= E[L_k] <= log p(x),

and L_k -> log p(x) as k grows, so -L_k is an estimate (an upper bound in expectation) of the
negative test log-likelihood in nats. `evaluate` reports, per example averaged over the split:

  iwae_nll        -L_k with k = samples
  iwae_neg_elbo   minus the mean of log w_i over the same k samples (the ELBO, estimated with k
                  samples instead of one), so iwae_nll <= iwae_neg_elbo example by example
  iwae_k, iwae_chunk, iwae_examples   the k used, samples per jitted pass, examples evaluated

The k samples are drawn in chunks inside one jitted `lax.scan` (running logsumexp), so memory
is bounded by `memory_mb` whatever k is. With dynamic binarization the split is binarized once
per batch with a fixed key (the figure is then for that binarized test set).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aelab import corruption
from aelab.config import check_fields
from aelab.errors import AelabError

DEFAULTS = dict(
    samples=0,        # k; 0 turns the IWAE evaluation off (5000 in the literature)
    batch_size=100,   # examples per jitted call
    memory_mb=256,    # budget for one chunk of samples' activations; sets the chunk size over k
    examples=0,       # evaluate the first N examples of the test split; 0 = all of it
)


def defaults(**overrides) -> ml_collections.ConfigDict:
  check_fields(overrides, DEFAULTS, 'iwae')
  return ml_collections.ConfigDict({**DEFAULTS, **overrides})


def resolve(cfg: ml_collections.ConfigDict | Mapping[str, Any] | None, model) -> dict | None:
  """Validated fields of `config.iwae`, or None when it is absent or off."""
  if cfg is None:
    return None
  fields = cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else dict(cfg)
  check_fields(fields, DEFAULTS, 'iwae')
  fields = {**DEFAULTS, **fields}
  for key in DEFAULTS:
    value = fields[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
      raise AelabError(f'iwae.{key} must be an integer >= 0; got {value!r}')
  if not fields['samples']:
    return None
  if fields['batch_size'] == 0 or fields['memory_mb'] == 0:
    raise AelabError('iwae.batch_size and iwae.memory_mb must be positive')
  if not hasattr(model, 'log_weights'):
    raise AelabError(f'iwae.samples = {fields["samples"]} needs a VAE (a model with log_weights); '
                     f'this model is {type(model).__name__}. Set iwae.samples = 0.')
  return fields


def chunk_size(model, params, x_example: np.ndarray, k: int, batch_size: int,
               memory_mb: int) -> int:
  """Samples per pass so that batch_size * chunk * (bytes of one forward's activations) fits.

  The activations of one example are measured with jax.eval_shape of the model's forward pass
  (its aux: every hidden layer, logits, z) and counted three times over (logits, log-likelihood
  terms and the decoder's hidden layers live together); a rough, safe estimate.
  """
  x1 = jnp.asarray(x_example[:1])
  _, aux = jax.eval_shape(lambda p, v: model.apply({'params': p}, v, rngs={'noise':
                                                   jax.random.PRNGKey(0)}), params, x1)
  per_sample = 3 * 4 * sum(math.prod(a.shape) for a in jax.tree.leaves(aux))
  return int(max(1, min(k, memory_mb * 2**20 // max(1, per_sample * batch_size))))


def make_step(model, mode: str, noise: corruption.InputNoise, k: int, chunk: int):
  """jit(params, stats, x, rng) -> (L_k [B], mean log w [B]); k samples in chunks of `chunk`."""
  full, rest = divmod(k, chunk)

  def log_weights(params, z, key, n):
    return model.apply({'params': params}, z, n, method=model.log_weights, rngs={'noise': key})

  @jax.jit
  def step(params, stats, x, rng):
    k_input, k_scan, k_rest = jax.random.split(rng, 3)
    z, _, _ = noise.prepare(mode, stats, x, k_input, corrupt=False)

    def body(carry, key):
      lse, total = carry
      lw = log_weights(params, z, key, chunk)
      return (jnp.logaddexp(lse, jax.nn.logsumexp(lw, axis=1)), total + jnp.sum(lw, axis=1)), None

    init = (jnp.full((x.shape[0],), -jnp.inf), jnp.zeros((x.shape[0],)))
    (lse, total), _ = jax.lax.scan(body, init, jax.random.split(k_scan, full))
    if rest:
      lw = log_weights(params, z, k_rest, rest)
      lse, total = jnp.logaddexp(lse, jax.nn.logsumexp(lw, axis=1)), total + jnp.sum(lw, axis=1)
    return lse - math.log(k), total / k

  return step


def evaluate(model, params, stats, x: np.ndarray, fields: Mapping[str, int], mode: str,
             noise: corruption.InputNoise, seed: int = 1) -> dict[str, float]:
  """IWAE and k-sample ELBO figures (nats per example) of `x`; see the module docstring."""
  k, batch_size = int(fields['samples']), int(fields['batch_size'])
  if fields.get('examples'):
    x = x[:fields['examples']]
  batch_size = min(batch_size, len(x))
  chunk = chunk_size(model, params, x, k, batch_size, int(fields['memory_mb']))
  step = make_step(model, mode, noise, k, chunk)
  bounds, elbos = [], []
  for index, start in enumerate(range(0, len(x), batch_size)):
    rng = jax.random.fold_in(jax.random.PRNGKey(seed), index)
    bound, elbo = step(params, stats, jnp.asarray(x[start:start + batch_size]), rng)
    bounds.append(bound)
    elbos.append(elbo)
  bounds, elbos = (np.concatenate(jax.device_get(v)).astype(np.float64) for v in (bounds, elbos))
  return {'iwae_nll': float(-bounds.mean()), 'iwae_neg_elbo': float(-elbos.mean()),
          'iwae_k': k, 'iwae_chunk': chunk, 'iwae_examples': len(x)}
