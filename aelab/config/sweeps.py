"""Sweep declarations, jax-free: lists of points, each point a dict {'a.b': value} of overrides.

    from aelab.config.sweeps import chain, product, sweep, zipit

    def get_sweep(arg=None):          # beside get_config(arg) in an experiment file
      return product(sweep('loss.kl_sparsity.weight', [0.3, 1.0, 3.0]),
                     sweep('seed', [0, 1, 2]))

`sweep(field, values)` is one axis; `product` varies its first argument slowest (big_vision's
order); `zipit` pairs equal-length sweeps point by point; `chain` concatenates them. A point's
index in the final list is its stable index (one task of a cluster job array). Errors are one
line (AelabError).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from aelab.errors import AelabError

Point = dict[str, Any]


def sweep(field: str, values: Sequence[Any]) -> list[Point]:
  """One axis: [{field: v} for v in values]."""
  if not isinstance(field, str) or not field:
    raise AelabError(f'sweep(field, values): the field must be a dotted path, e.g. '
                     f"'optimizer.learning_rate'; got {field!r}")
  if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence) or not values:
    raise AelabError(f'sweep({field!r}, ...): give a non-empty list of values; got {values!r}')
  return [{field: v} for v in values]


def product(*sweeps: Sequence[Point]) -> list[Point]:
  """Every combination, the first sweep varying slowest; a field in two factors is an error."""
  lists = [check(s, 'product') for s in sweeps]
  return [_merge(combo, 'product') for combo in itertools.product(*lists)]


def zipit(*sweeps: Sequence[Point]) -> list[Point]:
  """The i-th points of each sweep merged into one; the sweeps must have equal lengths."""
  lists = [check(s, 'zipit') for s in sweeps]
  lengths = [len(s) for s in lists]
  if len(set(lengths)) > 1:
    raise AelabError(f'zipit: the sweeps have different lengths {lengths}; give them equal '
                     'lengths (or use product)')
  return [_merge(combo, 'zipit') for combo in zip(*lists)]


def chain(*sweeps: Sequence[Point]) -> list[Point]:
  """The points of each sweep one after the other."""
  return [dict(p) for s in sweeps for p in check(s, 'chain')]


def check(points: Any, where: str) -> list[Point]:
  """`points` as a list of {str: value} dicts, or a one-line error naming `where`."""
  if isinstance(points, (str, bytes, Mapping)) or not isinstance(points, Sequence):
    raise AelabError(f'{where}: expected a list of points ({{"a.b": value}} dicts); got '
                     f'{type(points).__name__}')
  for i, point in enumerate(points):
    if not isinstance(point, Mapping) or not all(isinstance(k, str) and k for k in point):
      raise AelabError(f'{where}: point {i} is {point!r}; a point is a dict of overrides, e.g. '
                       "{'seed': 1, 'optimizer.learning_rate': 0.001}")
  return [dict(p) for p in points]


def _merge(parts: Sequence[Point], where: str) -> Point:
  merged: Point = {}
  for part in parts:
    both = sorted(set(merged) & set(part))
    if both:
      raise AelabError(f'{where}: {", ".join(both)} is swept twice; sweep each field once')
    merged.update(part)
  return merged
