"""Command-line sweep axes: `--sweep='loss.kl_sparsity.weight=0.3,1,3' --sweep='seed=0,1,2'`.

Each `--sweep='a.b=V1,V2,...'` is one axis; several axes combine as a product (the first
varying slowest). Each value is parsed by the field's type exactly as `--config.a.b=V` is
(aelab/config/overrides.py), so an unknown field or a value of the wrong type is the run's own
one-line error. Values are separated by commas outside parentheses and brackets, so tuples
need no quoting beyond the shell's: `--sweep='model.hidden=(256,2),(256,8)'`. When a value itself
holds a comma (a string such as `tanh,sigmoid`), separate the values by semicolons instead:
`--sweep='model.activation=relu;tanh,sigmoid'` (any ';' in the text makes ';' the separator).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import ml_collections

from aelab.config import overrides, sweeps
from aelab.errors import AelabError

_OPEN, _CLOSE = '([', ')]'


def parse(texts: Sequence[str], config: ml_collections.ConfigDict) -> list[dict[str, Any]]:
  """The points of the product of the axes `texts` (no axes: [])."""
  axes = [axis(text, config) for text in texts]
  return sweeps.product(*axes) if axes else []


def axis(text: str, config: ml_collections.ConfigDict) -> list[dict[str, Any]]:
  """One `a.b=V1,V2,...` axis as points {'a.b': typed value}."""
  path, eq, values = text.partition('=')
  path = path.strip()
  path = path[len('config.'):] if path.startswith('config.') else path
  if not eq or not path or not values.strip():
    raise AelabError(f"--sweep={text!r}: write --sweep='FIELD=V1,V2,...', e.g. "
                     "--sweep='seed=0,1,2' or --sweep='model.hidden=(256,2),(256,8)'")
  items = split_values(values)
  if any(not item for item in items):
    raise AelabError(f'--sweep={text!r}: an empty value; separate values by single commas (or '
                     'semicolons when a value holds a comma)')
  return sweeps.sweep(path, [value(config, path, item) for item in items])


def split_values(text: str) -> list[str]:
  """'0.3,1,3' -> ['0.3', '1', '3']; '(256,2),(256,8)' -> ['(256,2)', '(256,8)'];
  'relu;tanh,sigmoid' -> ['relu', 'tanh,sigmoid']."""
  if ';' in text:
    return [t.strip() for t in text.split(';')]
  items, depth, start = [], 0, 0
  for i, char in enumerate(text):
    depth += (char in _OPEN) - (char in _CLOSE)
    if char == ',' and depth == 0:
      items.append(text[start:i].strip())
      start = i + 1
  items.append(text[start:].strip())
  return items


def value(config: ml_collections.ConfigDict, path: str, text: str) -> Any:
  """`text` parsed as `--config.<path>=<text>` would be (on a copy of `config`)."""
  scratch = copy.deepcopy(config)
  overrides.apply_args(scratch, [(path, text)])
  parent, key = overrides.find(scratch, path)
  return parent[key]
