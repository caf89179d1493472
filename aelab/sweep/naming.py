"""Readable, file-system-safe directory names of sweep points, built from the swept values.

    {'loss.kl_sparsity.weight': 0.3, 'seed': 1}        -> 'weight=0.3,seed=1'
    {'model.hidden': (256, 8), 'evals.pca.components': 8} -> 'hidden=256x8,components=8'

A field is labelled by the last component of its path, or by as many trailing components as it
takes to tell it from the other swept fields (`kl_sparsity.weight`, `weight_decay.weight`). A name
shows the fields whose values vary over the sweep (all of a point's fields when none vary), in
the order they first appear. Values: ints and floats as Python writes them (1.0 -> '1'), tuples
joined by 'x', anything outside [A-Za-z0-9._+-] replaced by '_' (so '=' and ',' only separate).
Names are unique within a sweep (an error otherwise); a name over 120 characters is cut and ends
in a hash of the whole.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from aelab.errors import AelabError

_UNSAFE = re.compile(r'[^A-Za-z0-9._+-]')
_MAX = 120
EMPTY = 'base'  # the name of a point without overrides


def fields(points: Sequence[Mapping[str, Any]]) -> list[str]:
  """Every swept path, in the order of first appearance."""
  return list(dict.fromkeys(path for point in points for path in point))


def labels(paths: Sequence[str]) -> dict[str, str]:
  """Each path's shortest run of trailing components that no other path ends with."""
  out = {}
  for path in paths:
    parts = path.split('.')
    for n in range(1, len(parts) + 1):
      label = '.'.join(parts[-n:])
      if not any(other != path and ('.' + other).endswith('.' + label) for other in paths):
        break
    out[path] = label
  return out


def value_text(value: Any) -> str:
  """A value as it appears in a name or a table: 0.3, 1 (for 1.0), 256x8, True, relu."""
  if isinstance(value, float):
    text = repr(value)
    return text[:-2] if text.endswith('.0') else text
  if isinstance(value, (tuple, list)):
    return 'x'.join(value_text(v) for v in value) if value else 'empty'
  return str(value)


def names(points: Sequence[Mapping[str, Any]]) -> list[str]:
  """The directory name of every point; unique, or an AelabError naming the two points."""
  paths = fields(points)
  varying = [p for p in paths if len({_key(pt.get(p, _ABSENT)) for pt in points}) > 1] or paths
  label = labels(paths)
  out, seen = [], {}
  for i, point in enumerate(points):
    parts = [f'{_safe(label[p])}={_safe(value_text(point[p]))}' for p in varying if p in point]
    name = _short(','.join(parts) or EMPTY)
    if name in seen:
      raise AelabError(f'sweep points {seen[name]} and {i} get the same name {name!r} '
                       f'({dict(points[seen[name]])} and {dict(point)}); make them differ')
    seen[name] = i
    out.append(name)
  return out


_ABSENT = object()


def _key(value: Any) -> str:
  return 'absent' if value is _ABSENT else repr(value)


def _safe(text: str) -> str:
  return _UNSAFE.sub('_', text)


def _short(name: str) -> str:
  if len(name) > _MAX:
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    name = f'{name[:_MAX - 11]}-{digest}'
  return name
