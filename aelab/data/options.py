"""Checks a data config against a source's SOURCES entry and validates its fields (aelab.config.checks)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections

from aelab.config import checks
from aelab.errors import AelabError


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
  checks.fields(given, defaults[name], f'the config of dataset {name!r}')
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
  return checks.number(fields[key], f'dataset.{key}', low=0.0, below=1.0)


def count(fields: Mapping[str, Any], key: str, minimum: int = 0) -> int:
  """An integer field >= minimum (within int32: a count of rows, features or steps)."""
  return checks.integer(fields[key], f'dataset.{key}', low=minimum, high=checks.INT32_MAX)


def number(fields: Mapping[str, Any], key: str, positive: bool = False) -> float:
  """A finite float field (optionally > 0)."""
  return checks.number(fields[key], f'dataset.{key}', above=0.0 if positive else None)


def choice(fields: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> str:
  """A string field among `choices`."""
  return checks.choice(fields[key], choices, f'dataset.{key}')


def string(fields: Mapping[str, Any], key: str) -> str:
  """A string field ('' when unset); integers are accepted and converted."""
  value = fields[key]
  if value is None:
    return ''
  if isinstance(value, bool) or not isinstance(value, (str, int)):
    raise AelabError(f'dataset.{key} must be a string; got {value!r}.')
  return str(value)
