"""The points of a sweep: the file's get_sweep points x the command-line axes, validated, each
with its stable index (its position in the list), its directory name and its command line.

    pts = points.build(config, file_points, cli_points, base_args)
    pts[3].args   # ('--config.loss.kl_sparsity.weight=1.0', '--config.seed=0')

Validation runs before anything is written: each point's overrides are applied
(aelab.config.apply) to a copy of the config (each distinct field and value once), so an unknown
field or a value of the wrong type stops the whole sweep with the one-line message a run gives;
then aelab/sweep/validate.py checks each point's config as its run will. A point that fails
while it trains (it diverges) fails alone.
"""

from __future__ import annotations

import copy
import dataclasses
import shlex
from collections.abc import Sequence
from typing import Any

import ml_collections

from aelab.config import overrides, sweeps
from aelab.errors import AelabError
from aelab.sweep import naming


# The axis of a config file's variants: sweep('arg', ['model=wae', 'model=rae_l2']) runs each
# point with --config=FILE:ARG,<its variant> (different models, each its file's get_config).
ARG = 'arg'


@dataclasses.dataclass(frozen=True)
class Point:
  index: int
  name: str
  overrides: dict[str, Any]  # 'a.b' -> value (and 'arg' -> the variant, where swept)
  args: tuple[str, ...]      # the same as `--config.a.b=TEXT` arguments of python -m aelab.run

  @property
  def variant(self) -> str:
    """The point's variant of the config file ('' where the sweep has no 'arg' axis)."""
    return str(self.overrides.get(ARG, ''))

  def to_json(self) -> dict:
    return {'index': self.index, 'name': self.name, 'overrides': _jsonable(self.overrides),
            'args': list(self.args)}

  def describe(self) -> str:
    variant = [f':{self.variant}'] if self.variant else []
    return ' '.join(variant + [shlex.join(self.args)]).strip() or '(the config as it is)'


def with_variant(spec: str, variant: str) -> str:
  """FILE[:ARG] with `variant` added to ARG."""
  if not variant:
    return spec
  path, _, arg = spec.partition(':')
  return f'{path}:{arg},{variant}' if arg else f'{path}:{variant}'


class Variants:
  """Each variant's base config: the file's get_config(ARG[,variant]) with the command line's
  --config overrides, loaded once."""

  def __init__(self, spec: str, config: ml_collections.ConfigDict, base_args: Sequence[str]):
    self.spec, self.base_args, self.loaded = spec, list(base_args), {'': config}

  def __call__(self, variant: str) -> ml_collections.ConfigDict:
    if variant not in self.loaded:
      if not isinstance(variant, str):
        raise AelabError(f"sweep axis 'arg': a variant is the text after FILE.py:, e.g. "
                         f"'model=wae'; got {variant!r}")
      from aelab.config import files  # pylint: disable=import-outside-toplevel
      config = files.load(with_variant(self.spec, variant))
      changes = [a[len('--config.'):].split('=', 1) for a in self.base_args]
      self.loaded[variant] = overrides.apply_args(config, [(k, v) for k, v in changes])
    return self.loaded[variant]


def combine(file_points: Sequence[dict] | None, cli_points: Sequence[dict]) -> list[dict]:
  """The product of the file's points and the command-line axes (either alone when the other
  is absent); a sweep of nothing is the config as it is, one point."""
  if file_points and cli_points:
    both = [f for f in naming.fields(cli_points) if f in naming.fields(file_points)]
    if both:
      raise AelabError(f'--sweep sweeps {", ".join(both)}, which the config file\'s get_sweep '
                       'sweeps too; pass --file_sweep=false to sweep only the --sweep axes')
    return sweeps.product(file_points, cli_points)
  return [dict(p) for p in (file_points or cli_points or [{}])]


def build(config: ml_collections.ConfigDict, raw: Sequence[dict],
          base_args: Sequence[str] = (), variants: Variants | None = None) -> list[Point]:
  """Validated Points of the override dicts `raw` (a one-line AelabError otherwise); a point's
  'arg' (its variant) needs `variants`."""
  _check_duplicates(raw)
  _check_base(raw, base_args)
  if variants is None and any(ARG in point for point in raw):
    raise AelabError("sweep axis 'arg' (the config file's variants) needs the config file")
  cache: dict[tuple, str] = {}  # each distinct (variant, field, value) checked once
  args = [tuple(_cached(cache, variants(point[ARG]) if ARG in point else config, path, value,
                        point.get(ARG, '')) for path, value in point.items() if path != ARG)
          for point in raw]
  return [Point(i, name, dict(point), a)
          for i, (name, point, a) in enumerate(zip(naming.names(raw), raw, args))]


def text(value: Any) -> str:
  """A Python value as the text of `--config.a.b=TEXT`: 3, 0.001, True, relu, (256,8)."""
  if isinstance(value, (tuple, list)):
    inner = ','.join(repr(v) for v in value)
    return f'({inner},)' if len(value) == 1 else f'({inner})'
  return repr(value) if isinstance(value, float) else str(value)


def _cached(cache: dict, config: ml_collections.ConfigDict, path: str, value: Any,
            variant: str = '') -> str:
  key = (variant, path, f'{type(value).__name__}:{value!r}')
  if key not in cache:
    cache[key] = _arg(config, path, value)
  return cache[key]


def _arg(config: ml_collections.ConfigDict, path: str, value: Any) -> str:
  """`--config.<path>=<text>`, checked to parse back (as the run parses it) to `value`."""
  shown = text(value)
  checked = overrides.apply(copy.deepcopy(config), {path: value})
  parsed = overrides.apply_args(copy.deepcopy(config), [(path, shown)])
  want, got = _get(checked, path), _get(parsed, path)
  same = want == got or (want != want and got != got)  # nan reads back as nan
  if not same or type(want) is not type(got):
    raise AelabError(f'{path} = {value!r} cannot be given on the command line: '
                     f'--config.{path}={shown} reads as {got!r}')
  return f'--config.{path}={shown}'


def _get(config: ml_collections.ConfigDict, path: str) -> Any:
  parent, key = overrides.find(config, path)
  return parent[key]


def _check_duplicates(raw: Sequence[dict]) -> None:
  seen = {}
  for i, point in enumerate(raw):
    key = repr(sorted(point.items()))
    if key in seen:
      raise AelabError(f'sweep points {seen[key]} and {i} are the same ({point}); drop one')
    seen[key] = i


def _check_base(raw: Sequence[dict], base_args: Sequence[str]) -> None:
  swept = set(naming.fields(raw))
  for arg in base_args:
    path = arg.split('=', 1)[0][len('--config.'):]
    if path in swept:
      raise AelabError(f'{arg} sets a field the sweep sweeps; drop the override or the axis')


def _jsonable(value: Any) -> Any:
  if isinstance(value, dict):
    return {k: _jsonable(v) for k, v in value.items()}
  if isinstance(value, (tuple, list)):
    return [_jsonable(v) for v in value]
  return value
