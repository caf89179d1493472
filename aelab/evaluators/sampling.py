"""A model's samples: codes drawn from its own prior, or, for a model without one (a
deterministic autoencoder), from a density fitted to its training codes (ex-post density
estimation, Ghosh et al. 2020: the model's `fit_prior`, a 10-component Gaussian mixture by
default), decoded to input units.

    z, source = sampling.codes(ctx, params, prep, 64, seed=0)   # source: 'prior' or 'ex-post ...'
    x = sampling.decode(ctx, params, prep, z)                   # [64, *feature_shape]
    why = sampling.unavailable(ctx, prep.mode)                  # None where samples can be drawn

The training codes are the encodings (`Forward.encode`: a VAE's posterior means) of at most
MAX_FIT_CODES rows of the training split (a fixed random subset beyond that). A fitted density
is kept for the parameters it was fitted to (by their digest), so the evaluators of one
evaluation (frechet, plots) fit it once.
"""

from __future__ import annotations

import functools
import hashlib

import jax
import numpy as np
import tqdm

from aelab.evaluators.context import Context

MAX_FIT_CODES = 20000
BATCH = 1000
_FITTED: dict[tuple, object] = {}   # (forward, params digest, seed) -> density; the last two


@functools.lru_cache(maxsize=None)
def _encode_fn(forward):
  return jax.jit(forward.encode)


@functools.lru_cache(maxsize=None)
def _decode_fn(forward):
  return jax.jit(forward.decode)


def unavailable(ctx: Context, mode: str) -> str | None:
  """Why this model's samples cannot be drawn in input units (with preprocessing `mode`), or
  None when they can."""
  if not ctx.forward.model.RECONSTRUCTS:
    return f'model {ctx.config.model.name!r} has no decoder to sample from'
  if mode == 'per_sample':
    return ("preprocessing 'per_sample' needs each row's own mean and std to return a decoded "
            'code to input units, and a sampled code has no row')
  return None


def batched(fn, x: np.ndarray, batch_size: int = BATCH, desc: str = '',
            progress: bool = False) -> np.ndarray:
  """fn applied to consecutive slices of x, concatenated on the host (a tqdm bar with
  `progress`)."""
  starts = range(0, len(x), batch_size)
  parts = [np.asarray(jax.device_get(fn(x[i:i + batch_size])))
           for i in tqdm.tqdm(starts, desc=desc, disable=not progress or len(starts) < 2,
                              leave=False)]
  return np.concatenate(parts) if parts else np.zeros((0,))


def encode(ctx: Context, params, prep, x: np.ndarray, progress: bool = False) -> np.ndarray:
  """Codes [N, ...] of raw rows x (host numpy)."""
  fn = _encode_fn(ctx.forward)
  return batched(lambda rows: fn(params, prep, rows), x, desc='encode', progress=progress)


def decode(ctx: Context, params, prep, codes: np.ndarray, progress: bool = False) -> np.ndarray:
  """Decoder outputs of codes [n, ...] in input units [n, *feature_shape] (host numpy)."""
  fn = _decode_fn(ctx.forward)
  out = batched(lambda z: fn(params, prep, z), np.asarray(codes, np.float32), desc='decode',
                progress=progress)
  return out.reshape(len(codes), *ctx.dataset.feature_shape)


def training_codes(ctx: Context, params, prep, seed: int, progress: bool = False) -> np.ndarray:
  """Codes of the training split (a fixed random MAX_FIT_CODES of its rows when larger)."""
  x = ctx.dataset.train.x
  if len(x) > MAX_FIT_CODES:
    rows = np.sort(np.random.default_rng(seed).choice(len(x), MAX_FIT_CODES, replace=False))
    x = x[rows]
  return encode(ctx, params, prep, x, progress)


def digest(params) -> str:
  """md5 of a parameter tree's arrays (host copies)."""
  h = hashlib.md5()
  for leaf in jax.tree.leaves(jax.device_get(params)):
    a = np.ascontiguousarray(leaf)
    h.update(f'{a.dtype}{a.shape}'.encode())
    h.update(a.tobytes())
  return h.hexdigest()


def fitted(ctx: Context, params, prep, seed: int, progress: bool = False):
  """The model's ex-post density of its training codes (`fit_prior`), fitted once per
  parameters and seed."""
  key = (ctx.forward, digest(params), seed)
  if key not in _FITTED:
    codes_ = training_codes(ctx, params, prep, seed, progress)
    density = ctx.forward.model.fit_prior(jax.device_get(params), codes_, seed)
    while len(_FITTED) >= 2:
      _FITTED.pop(next(iter(_FITTED)))
    _FITTED[key] = (density, codes_.shape[1:])
  return _FITTED[key]


def describe(density) -> str:
  """A density's own phrase (`describe()`), else its class name."""
  return density.describe() if hasattr(density, 'describe') else type(density).__name__


def codes(ctx: Context, params, prep, n: int, seed: int,
          progress: bool = False) -> tuple[np.ndarray, str]:
  """(n codes [n, ...] as host numpy, source): from the model's prior ('prior'), else drawn
  from its ex-post density ('ex-post <the density>'), both with `seed`."""
  z = ctx.forward.prior_codes(params, jax.random.PRNGKey(seed), n)
  if z is not None:
    return np.asarray(jax.device_get(z)), 'prior'
  density, shape = fitted(ctx, params, prep, seed, progress)
  z = np.asarray(density.sample(np.random.default_rng(seed), n))
  return z.reshape(n, *shape), f'ex-post {describe(density)}'
