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


def resolve(cfg: Mapping[str, Any] | ml_collections.ConfigDict,
            defaults: Mapping[str, Mapping[str, Any]], served_by: str) -> tuple[str, dict[str, Any]]:
  """(name, a plain dict of all fields: the source's defaults overridden by `cfg`).

  `defaults` maps each dataset name the source serves to its fields; an unknown name, or a
  field of `cfg` that the source does not know, is an AelabError naming the valid ones.
  """
  name = cfg['name']
  if name not in defaults:
    raise AelabError(f'{served_by} serves {", ".join(defaults)}; got dataset {name!r}.')
  given = cfg.to_dict() if isinstance(cfg, ml_collections.ConfigDict) else dict(cfg)
  given.pop('name', None)
  check_fields(given, defaults[name], f'the config of dataset {name!r}')
  return name, {**defaults[name], **given}


def split_fractions(fields: Mapping[str, Any]) -> tuple[float, float]:
  """(val_fraction, test_fraction), each in [0, 1), together below 1."""
  val, test = fraction(fields, 'val_fraction'), fraction(fields, 'test_fraction')
  if val + test >= 1.0:
    raise AelabError(f'dataset.val_fraction + dataset.test_fraction must be < 1; got '
                     f'{val} + {test}.')
  return val, test


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
