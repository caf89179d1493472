"""The one parser of a config file's argument, `file.py:word,key=value` (big_vision's parse_arg).

    def get_config(arg=None):
      v = parse_arg(arg, tiny=False, batch=256)   # 'tiny' -> v.tiny = True; 'batch=4096' -> 4096

Each keyword of the spec is a variant and its default, and the default's type is the variant's:
a bool is a bare word (`tiny` sets it to True); an int, float or str takes `key=value`. A type in
place of a default (`batch=int`) is a variant of that type that defaults to None (not given).
"""

from __future__ import annotations

from typing import Any

import ml_collections

from aelab.errors import AelabError

_TYPES = (bool, int, float, str)
_ARTICLE = {int: 'an int', float: 'a float', str: 'a string'}


def parse_arg(arg: str | None, **spec: Any) -> ml_collections.ConfigDict:
  """The variants of `arg` ('a,b=1'; None or '' gives the defaults) as a ConfigDict of `spec`'s
  keys; an unknown word or key, or a value of the wrong type, is a one-line AelabError."""
  kinds = {key: _kind(key, default) for key, default in spec.items()}
  values = {key: None if isinstance(d, type) else d for key, d in spec.items()}
  for item in filter(None, (s.strip() for s in (arg or '').split(','))):
    key, eq, text = item.partition('=')
    key = key.strip()
    if key not in kinds:
      raise AelabError(f'unknown variant {item!r}; {_valid(spec)}')
    values[key] = _value(item, key, kinds[key], eq, text.strip(), spec)
  return ml_collections.ConfigDict(values)


def _kind(key: str, default: Any) -> type:
  kind = default if isinstance(default, type) else type(default)
  if kind not in _TYPES:
    raise TypeError(f'variant {key!r}: the default must be a bool, int, float or str (or one of '
                    f'those types); got {default!r}')
  return kind


def _value(item: str, key: str, kind: type, eq: str, text: str, spec: dict) -> Any:
  if kind is bool:
    if eq:
      raise AelabError(f'unknown variant {item!r} ({key} is a word: {key!r} turns it on); '
                       f'{_valid(spec)}')
    return True
  if not eq:
    raise AelabError(f'unknown variant {item!r} ({key} needs a value: {key}=<{kind.__name__}>); '
                     f'{_valid(spec)}')
  try:
    return kind(text)
  except ValueError:
    raise AelabError(f'unknown variant {item!r} ({key} is {_ARTICLE[kind]}); '
                     f'{_valid(spec)}') from None


def _valid(spec: dict) -> str:
  """'valid variants (comma-separated): tiny, batch=<int> (default 256)'."""
  if not spec:
    return 'this config has no variants'
  words = []
  for key, default in spec.items():
    if default is bool or isinstance(default, bool):
      words.append(key)
    elif isinstance(default, type):
      words.append(f'{key}=<{default.__name__}>')
    else:
      words.append(f'{key}=<{type(default).__name__}> (default {default!r})')
  return f'valid variants (comma-separated): {", ".join(words)}'
