"""Checks a data config against a source's DEFAULTS and validates common fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections
from ml_collections import config_dict

from aelab.config import check_fields
from aelab.errors import AelabError


def as_config_dict(name: str, defaults: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """`ConfigDict(name=name, **defaults)`; None defaults become `placeholder(str)` (paths)."""
  fields = {k: config_dict.placeholder(str) if v is None else v for k, v in defaults.items()}
  return ml_collections.ConfigDict({'name': name, **fields})


def resolve(cfg: Mapping[str, Any] | ml_collections.ConfigDict, name: str,
            defaults: Mapping[str, Any]) -> dict[str, Any]:
  """Returns a plain dict of all fields: the defaults overridden by `cfg`.

  Raises AelabError naming any field of `cfg` that the source does not know.
  """
  given = cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else dict(cfg)
  given.pop('name', None)
  check_fields(given, defaults, f'the config of dataset {name!r}')
  return {**defaults, **given}


def fraction(fields: Mapping[str, Any], key: str) -> float:
  """A split fraction in [0, 1)."""
  value = fields[key]
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
    raise AelabError(f'dataset.{key} must be a number in [0, 1); got {value!r}.')
  return float(value)


def count(fields: Mapping[str, Any], key: str, minimum: int = 0) -> int:
  """An integer field >= minimum."""
  value = fields[key]
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise AelabError(f'dataset.{key} must be an integer >= {minimum}; got {value!r}.')
  return int(value)


def number(fields: Mapping[str, Any], key: str, positive: bool = False) -> float:
  """A finite float field (optionally > 0)."""
  value = fields[key]
  ok = not isinstance(value, bool) and isinstance(value, (int, float))
  if ok:
    value = float(value)
    ok = value == value and abs(value) != float('inf') and (value > 0 or not positive)
  if not ok:
    kind = 'a positive finite number' if positive else 'a finite number'
    raise AelabError(f'dataset.{key} must be {kind}; got {fields[key]!r}.')
  return value


def choice(fields: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
  """A string field among `choices`."""
  value = fields[key]
  if value not in choices:
    valid = ', '.join(map(repr, choices))
    raise AelabError(f'dataset.{key} must be one of {valid}; got {value!r}.')
  return value


def string(fields: Mapping[str, Any], key: str) -> str:
  """A string field ('' when unset); integers are accepted and converted."""
  value = fields[key]
  if value is None:
    return ''
  if isinstance(value, bool) or not isinstance(value, (str, int)):
    raise AelabError(f'dataset.{key} must be a string; got {value!r}.')
  return str(value)
