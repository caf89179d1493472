"""The one validation of config values: field names, choices, integers, numbers and widths.

    checks.fields(cfg, valid, 'model dense')
    checks.choice(cfg.activation, ACTIVATIONS, 'model.activation')
    k = checks.integer(cfg.k, 'model.k', low=1)
    lr = checks.number(cfg.learning_rate, 'optimizer.learning_rate', above=0)
    hidden = checks.widths(cfg.hidden, 'model.hidden')

Every failure is one line (AelabError) naming the field, the value given and what would work.
An integer is a Python or numpy integer (never a bool) within int64 unless a tighter range is
given; a number is an integer or float (never a bool) and always finite.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from aelab.errors import AelabError

INT64_MAX = 2**63 - 1
INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1
_TYPE_LIMITS = (INT32_MAX, UINT32_MAX, INT64_MAX)  # named in an error only when exceeded


def fields(cfg: Mapping, valid: Sequence[str], where: str) -> None:
  """Raises AelabError naming every key of `cfg` that is not in `valid`."""
  unknown = sorted(set(cfg.keys()) - set(valid))
  if unknown:
    raise AelabError(
        f'unknown field{"s" if len(unknown) > 1 else ""} {", ".join(unknown)} in {where}; '
        f'valid fields: {", ".join(sorted(valid))}')


def choice(value: Any, choices: Sequence[str], what: str) -> str:
  """`value` when it is one of `choices`; else an error listing them."""
  if not isinstance(value, str) or value not in choices:
    raise AelabError(f'unknown {what} {value!r}; valid choices: {", ".join(choices)}')
  return value


def _bounds(low, high, above, below) -> str:
  """'>= 1', '< 1', or an interval 'in [0, 1)' when both ends are bounded."""
  low, high, above, below = (None if v is None else _power(v) for v in (low, high, above, below))
  start = f'[{low}' if low is not None else f'({above}' if above is not None else None
  end = f'{high}]' if high is not None else f'{below})' if below is not None else None
  if start and end:
    return f'in {start}, {end}'
  if start:
    return f'>= {low}' if low is not None else f'> {above}'
  if end:
    return f'<= {high}' if high is not None else f'< {below}'
  return ''


def _power(v) -> str:
  """2**63 - 1 rather than 9223372036854775807; 0 rather than 0.0."""
  for bits in (31, 32, 63, 64):
    if v == 2**bits - 1:
      return f'2**{bits} - 1'
  return f'{v:g}' if isinstance(v, float) else str(v)


def integer(value: Any, field: str, low: int | None = None, high: int | None = INT64_MAX,
            hint: str = '') -> int:
  """`value` as an int in [low, high] (int64 by default); `hint` ends the error message."""
  ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
  if ok:
    value = int(value)
    ok = (low is None or value >= low) and (high is None or value <= high)
  if not ok:
    too_big = isinstance(value, int) and not isinstance(value, bool) and high is not None \
        and value > high
    shown = high if high not in _TYPE_LIMITS or too_big else None  # a type's limit when hit
    bounds = _bounds(low, shown, None, None)
    raise AelabError(f'{field} = {value!r}; it must be an integer{" " + bounds if bounds else ""}'
                     f'{hint}')
  return value


def number(value: Any, field: str, low: float | None = None, high: float | None = None, *,
           above: float | None = None, below: float | None = None, hint: str = '') -> float:
  """`value` as a finite float with low <= value <= high, above < value < below (each optional)."""
  ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
  if ok:
    value = float(value)
    ok = (math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high)
          and (above is None or value > above) and (below is None or value < below))
  if not ok:
    bounds = _bounds(low, high, above, below)
    raise AelabError(f'{field} = {value!r}; it must be a finite number'
                     f'{" " + bounds if bounds else ""}{hint}')
  return value


def widths(value: Any, field: str, what: str = 'width', empty: str | None = None) -> tuple[int, ...]:
  """A tuple of positive widths (layer sizes); `empty`: the error when none is given (None: an
  empty tuple is fine)."""
  if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
    raise AelabError(f'{field} = {value!r}; give a tuple of positive {what}s, e.g. (256, 64)')
  out = tuple(value)
  if not out and empty is not None:
    raise AelabError(f'{field} = (); {empty}')
  for i, w in enumerate(out):
    integer(w, f'{field}[{i}]', low=1, high=INT32_MAX, hint=f' ({field} = {out})')
  return out
