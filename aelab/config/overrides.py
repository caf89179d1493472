"""Overrides of a loaded config: `--config.a.b=value` from the command line, or {'a.b': value}.

Every path must name an existing field (an unknown one is an error listing the valid fields of
its group), and every value must have the field's type: a command-line string is parsed by the
field's type (int, float, bool, str, tuple, as ml_collections' config_flags does), a Python value
is checked against it (an int is fine for a float). Errors are one line (AelabError). Setting
`dataset.name` to another source swaps in that source's fields (`_swapped_source`); it is applied
before the other overrides, wherever it stands, so that they set the new source's fields.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
from ml_collections.config_flags import tuple_parser

from aelab.errors import AelabError

_NAMES = {int: 'an int', float: 'a float', bool: 'a bool (True or False)', str: 'a string',
          tuple: "a tuple, e.g. '(128, 16)'"}
_TRUE, _FALSE = ('true', 't', '1', 'yes'), ('false', 'f', '0', 'no')


def apply(config: ml_collections.ConfigDict,
          values: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """Sets each 'a.b' path of `values` to its Python value, type-checked; returns `config`."""
  for path, value in _name_first(values.items()):
    parent, key = find(config, path)
    value = _checked(parent, key, path, value)
    if not _swapped_source(config, path, value):
      _set(parent, key, path, value, f'config.{path} = {value!r}')
  return config


def apply_args(config: ml_collections.ConfigDict, args: Sequence[tuple[str, str | None]],
               flag: str = 'config') -> ml_collections.ConfigDict:
  """Applies command-line overrides (path, text) in order: `--config.a.b=text` is ('a.b', 'text');
  text None (a bare `--config.a.b`) sets a bool field to True. Returns `config`."""
  for path, text in _name_first(args):
    parent, key = find(config, path, flag)
    shown = f'--{flag}.{path}' + ('' if text is None else f'={text!r}')
    value = _parse(parent, key, path, text, shown)
    if not _swapped_source(config, path, value):
      _set(parent, key, path, value, shown)
  return config


def _name_first(pairs):
  """(path, value) pairs with those of 'dataset.name' first, the others in their order."""
  pairs = list(pairs)
  return [p for p in pairs if p[0] == 'dataset.name'] + [p for p in pairs if p[0] != 'dataset.name']


def _swapped_source(config: ml_collections.ConfigDict, path: str, value: Any) -> bool:
  """Setting `dataset.name` to another source replaces the dataset group by that source's
  defaults (the old source's fields mean nothing to the new one); overrides after it set the new
  source's fields, e.g. --config.dataset.name=npz --config.dataset.path=acts.npz."""
  if path != 'dataset.name' or value == config.dataset.get('name'):
    return False
  from aelab.config import defaults  # local: defaults imports this module's package
  config.dataset = defaults.dataset(value)
  return True


def find(config: ml_collections.ConfigDict, path: str, flag: str = 'config'
         ) -> tuple[ml_collections.ConfigDict, str]:
  """(group, key) of the existing field at 'a.b.c'; an unknown field names the valid ones."""
  node, walked = config, []
  keys = path.split('.')
  for key in keys:
    if not isinstance(node, (ml_collections.ConfigDict, Mapping)) or key not in node:
      where = '.'.join(walked) or flag
      valid = sorted(node.keys()) if isinstance(node, (ml_collections.ConfigDict, Mapping)) else []
      hint = (f'; valid fields of {where}: {", ".join(valid)}' if valid
              else f' ({where} is not a group)')
      raise AelabError(f"unknown config field '{flag}.{path}'{hint}")
    parent, node = node, node[key]
    walked.append(key)
  return parent, keys[-1]


def _type(parent: ml_collections.ConfigDict, key: str) -> type:
  if isinstance(parent, ml_collections.ConfigDict):
    return parent.get_type(key)
  return type(parent[key])


def _parse(parent, key: str, path: str, text: str | None, shown: str) -> Any:
  """The command-line `text` as a value of the field's type."""
  kind = _type(parent, key)
  if text is None:
    if kind is bool:
      return True
    raise AelabError(f'{shown} needs a value: {shown}=VALUE ({path} is {_describe(parent, key)})')
  try:
    if kind is bool:
      if text.lower() not in _TRUE + _FALSE:
        raise ValueError(text)
      return text.lower() in _TRUE
    if kind in (int, float):
      return kind(text)
    if kind is str:
      return text
    if kind is tuple:
      return tuple_parser.TupleParser().parse(text)
  except ValueError:
    raise AelabError(f'{shown}: {path} is {_describe(parent, key)}') from None
  if issubclass(kind, (ml_collections.ConfigDict, Mapping)):
    raise AelabError(f'{shown}: {path} is a group; override its fields, e.g. '
                     f'--config.{path}.{sorted(parent[key].keys())[0]}=...')
  try:  # a field without a fixed type (None): a Python literal, or else the string
    return ast.literal_eval(text)
  except (SyntaxError, ValueError):
    return text


def _checked(parent, key: str, path: str, value: Any) -> Any:
  """A Python `value` for the field, or an error naming the field's type."""
  kind = _type(parent, key)
  ok = {bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        tuple: isinstance(value, (tuple, list))}.get(kind, True)
  if issubclass(kind, (ml_collections.ConfigDict, Mapping)):
    ok = False
  if not ok:
    raise AelabError(f'config.{path} = {value!r}: {path} is {_describe(parent, key)}')
  return float(value) if kind is float else tuple(value) if kind is tuple else value


def _set(parent, key: str, path: str, value: Any, shown: str) -> None:
  try:
    parent[key] = value
  except (TypeError, ValueError) as e:  # ConfigDict's own type check, the last word
    raise AelabError(f'{shown}: {path} is {_describe(parent, key)} ({e})') from None


def _describe(parent, key: str) -> str:
  """'an int (now 128)', 'a group of fields a, b', ..."""
  kind, now = _type(parent, key), parent[key]
  if issubclass(kind, (ml_collections.ConfigDict, Mapping)):
    return f'a group of fields {", ".join(sorted(now.keys()))}'
  return f'{_NAMES.get(kind, kind.__name__)} (now {now!r})'
