"""Explicit, invertible input transforms, fitted on the training split only.

What travels through aelab is a `Preprocessor`: the mode and its statistics as one pytree
(the statistics are its leaves, the mode static), so it crosses jit and checkpoints whole:

  prep = Preprocessor.fit(mode, x_train)   # host-side numpy, float64 maths, float32 statistics
  z, ctx = prep.apply(x)                   # jax.numpy; works on numpy/jax arrays and under jit
  x = prep.invert(z, ctx)                  # the exact inverse of `apply`

Underneath, every mode is three pure functions: fit(mode, x), apply(mode, stats, x) and
invert(mode, stats, z, ctx).

`stats` are per feature (shaped like one example) and are saved with the
checkpoint; `ctx` carries per-example statistics (only `per_sample` has any) so
that reconstructions can be returned in input units.

Modes (`describe` gives the same formulas as one line each):

  none         z = x
  minmax       z = (x - min) / range - 0.5, range = max - min   -> [-0.5, 0.5]
  h2o          z = (x - mean) * mul, mul = 1 / (max - min)      (H2O's autoencoder normalisation)
  standardize  z = (x - mean) / std
  per_sample   each example centred by its own mean and divided by its own std

A constant feature (max == min) gets range / mul / std 1.0, so it maps to a
constant instead of dividing by zero.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from aelab.errors import AelabError

MODES = ('none', 'minmax', 'h2o', 'standardize', 'per_sample')

# The statistics `fit` produces for each mode.
STAT_KEYS: dict[str, tuple[str, ...]] = {
    'none': (),
    'minmax': ('min', 'range'),
    'h2o': ('mean', 'mul'),
    'standardize': ('mean', 'std'),
    'per_sample': (),
}

_FORMULAS = {
    'none': 'z = x',
    'minmax': ('z = (x - min) / range - 0.5, range = max - min per feature '
               '(1 where max == min); training data maps to [-0.5, 0.5]'),
    'h2o': ('z = (x - mean) * mul, mul = 1 / (max - min) per feature '
            "(1 where max == min); H2O's autoencoder normalisation"),
    'standardize': ('z = (x - mean) / std, std = population std per feature '
                    '(1 where it is 0)'),
    'per_sample': ('z = (x - mean_i) / std_i with mean_i, std_i over all '
                   'features of example i (std_i = 1 for a constant example); '
                   'nothing fitted'),
}

Array = Any  # np.ndarray or jax.Array


def check_mode(mode: Any) -> None:
  """Raises AelabError unless `mode` is one of MODES."""
  if not isinstance(mode, str) or mode not in MODES:
    raise AelabError(
        f'unknown preprocessing mode {mode!r}; valid modes: {", ".join(MODES)}')


def fit(mode: str, x: np.ndarray) -> dict[str, np.ndarray]:
  """Fits the statistics of `mode` on the training split `x` [N, *feature_shape].

  Computed in float64 on the host, returned as float32 arrays shaped like one
  example (feature_shape).
  """
  check_mode(mode)
  if mode in ('none', 'per_sample'):
    return {}
  x = np.asarray(x, dtype=np.float64)
  if x.ndim < 2 or x.shape[0] == 0:
    raise AelabError(
        f'preprocessing.fit expects the training split as [N, *feature_shape] '
        f'with N >= 1; got shape {x.shape}')
  if not np.all(np.isfinite(x)):
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    raise AelabError(
        f'preprocessing.fit({mode!r}): the training data has {bad} NaN/inf '
        'values; clean or impute them first')
  lo, hi = x.min(axis=0), x.max(axis=0)
  constant = hi == lo
  # A constant feature is centred on its exact value, so it maps to exactly 0.
  mean = np.where(constant, lo, x.mean(axis=0))
  if mode == 'minmax':
    stats = {'min': lo, 'range': np.where(constant, 1.0, hi - lo)}
  elif mode == 'h2o':
    span = np.where(constant, 1.0, hi - lo)
    stats = {'mean': mean, 'mul': np.where(constant, 1.0, 1.0 / span)}
  else:  # standardize
    std = x.std(axis=0)
    stats = {'mean': mean, 'std': np.where(constant | (std == 0), 1.0, std)}
  return {k: np.asarray(v, dtype=np.float32) for k, v in stats.items()}


def _stats(mode: str, stats: dict, x: Array) -> tuple[jnp.ndarray, ...]:
  """Returns the statistics of `mode` in STAT_KEYS order, checked against x."""
  missing = [k for k in STAT_KEYS[mode] if k not in stats]
  if missing:
    raise AelabError(
        f'preprocessing mode {mode!r} needs statistics '
        f'{", ".join(STAT_KEYS[mode])}; missing {", ".join(missing)} '
        f'(got {", ".join(sorted(stats)) or "none"}); were they fitted with '
        'another mode?')
  out = []
  for k in STAT_KEYS[mode]:
    s = jnp.asarray(stats[k])
    shape = tuple(x.shape[x.ndim - s.ndim:]) if s.ndim <= x.ndim else None
    if shape != tuple(s.shape):
      raise AelabError(
          f'preprocessing {mode!r}: statistic {k!r} has shape {tuple(s.shape)} '
          f'but the input has shape {tuple(x.shape)}; its trailing dimensions '
          'must match the feature shape the statistics were fitted on')
    out.append(s)
  return tuple(out)


def _divide(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
  """a / b, correctly rounded like numpy.

  Under jit XLA rewrites `a / broadcast(b)` into `a * broadcast(1 / b)`, which
  is off by an ulp (minmax's maximum would be 0.49999994, not 0.5). Dividing
  by a materialised broadcast behind an optimization barrier keeps true
  division.
  """
  b = jnp.broadcast_to(b, jnp.broadcast_shapes(a.shape, b.shape))
  return a / jax.lax.optimization_barrier(b)


def _row_stats(x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Per-example mean and std over all features, kept broadcastable [N, 1...]."""
  if x.ndim < 2:
    raise AelabError(
        f"preprocessing 'per_sample' expects a batch [N, *feature_shape]; got "
        f'shape {tuple(x.shape)}')
  axes = tuple(range(1, x.ndim))
  mean = jnp.mean(x, axis=axes, keepdims=True)
  # A second pass removes the rounding error of the first sum, which matters
  # when the spread is tiny next to the mean (e.g. 1.109 +- 0.001).
  mean = mean + jnp.mean(x - mean, axis=axes, keepdims=True)
  std = jnp.sqrt(jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True))
  lo = jnp.min(x, axis=axes, keepdims=True)
  hi = jnp.max(x, axis=axes, keepdims=True)
  constant = hi == lo
  # Exact for constant rows (rounding in the mean would leave a tiny std).
  mean = jnp.where(constant, lo, mean)
  std = jnp.where(constant | (std <= 0), jnp.ones_like(std), std)
  return mean, std


def apply(mode: str, stats: dict, x: Array) -> tuple[Array, dict[str, Array]]:
  """Maps inputs to model space: returns (z, ctx); ctx is {} except per_sample."""
  check_mode(mode)
  if mode == 'none':
    return x, {}
  x = jnp.asarray(x)
  if mode == 'per_sample':
    mean, std = _row_stats(x)
    return _divide(x - mean, std), {'mean': mean, 'std': std}
  a, b = _stats(mode, stats, x)
  if mode == 'minmax':
    return _divide(x - a, b) - 0.5, {}
  if mode == 'h2o':
    return (x - a) * b, {}
  return _divide(x - a, b), {}  # standardize


def invert(mode: str, stats: dict, z: Array, ctx: dict[str, Array]) -> Array:
  """Maps model-space values back to input units: the exact inverse of apply."""
  check_mode(mode)
  if mode == 'none':
    return z
  z = jnp.asarray(z)
  if mode == 'per_sample':
    if not ctx or 'mean' not in ctx or 'std' not in ctx:
      raise AelabError(
          "preprocessing 'per_sample' is inverted with the ctx that apply "
          "returned for the same examples ({'mean', 'std'}); got "
          f'{sorted(ctx or {})}')
    return z * ctx['std'] + ctx['mean']
  a, b = _stats(mode, stats, z)
  if mode == 'minmax':
    return (z + 0.5) * b + a
  if mode == 'h2o':
    return z / b + a
  return z * b + a  # standardize


def describe(mode: str, stats: dict | None = None) -> str:
  """One line: the formula of `mode` in the names of its statistics."""
  check_mode(mode)
  line = _FORMULAS[mode]
  if stats:
    shapes = {tuple(np.shape(v)) for v in stats.values()}
    if len(shapes) == 1:
      line += f'; statistics {", ".join(STAT_KEYS[mode])} of shape {shapes.pop()}'
  return line


@flax.struct.dataclass
class Preprocessor:
  """A preprocessing mode with its fitted statistics: a pytree whose leaves are the statistics."""
  mode: str = flax.struct.field(pytree_node=False)
  stats: dict = flax.struct.field(default_factory=dict)

  @classmethod
  def fit(cls, mode: str, x: np.ndarray) -> Preprocessor:
    """Fits `mode` on the training split `x` [N, *feature_shape]."""
    return cls(mode=mode, stats=fit(mode, x))

  def apply(self, x: Array) -> tuple[Array, dict[str, Array]]:
    """Inputs -> model space: (z, ctx); ctx is {} except for per_sample."""
    return apply(self.mode, self.stats, x)

  def invert(self, z: Array, ctx: dict[str, Array]) -> Array:
    """Model space -> input units: the exact inverse of `apply`."""
    return invert(self.mode, self.stats, z, ctx)

  def describe(self) -> str:
    """One line: the formula in the names of the statistics."""
    return describe(self.mode, self.stats)

  @property
  def stat_keys(self) -> tuple[str, ...]:
    return STAT_KEYS[self.mode]
