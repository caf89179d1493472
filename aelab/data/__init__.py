"""Datasets by name: the one place a `config.data.name` is resolved.

    cfg = data.defaults('mnist'); cfg.train_limit = 1000
    ds = data.load(cfg, seed=0)      # -> Dataset (see aelab/data/dataset.py)

Each source module holds `DEFAULTS` (name -> default fields) and `load(cfg, seed)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import ml_collections

from aelab.data import activations, codes, idx, npy, synthetic, tabular, toy
from aelab.data.dataset import Dataset, Split, epoch_permutation, split_off
from aelab.errors import AelabError

_SOURCES: dict[str, ModuleType] = {
    name: module for module in (idx, tabular, npy, synthetic, toy, codes, activations)
    for name in module.DEFAULTS}
NAMES: tuple[str, ...] = tuple(_SOURCES)

__all__ = ['NAMES', 'Dataset', 'Split', 'defaults', 'epoch_permutation', 'load', 'split_off']


def _source(name: Any) -> ModuleType:
  if name not in _SOURCES:
    raise AelabError(f'unknown dataset {name!r}; valid names: {", ".join(NAMES)}.')
  return _SOURCES[name]


def defaults(name: str) -> ml_collections.ConfigDict:
  """`ConfigDict(name=name, **defaults)` of dataset `name`; paths default to None."""
  from aelab.data import options  # Local: keeps the public namespace small.
  return options.as_config_dict(name, _source(name).DEFAULTS[name])


def load(cfg: ml_collections.ConfigDict | Mapping[str, Any], seed: int) -> Dataset:
  """Loads dataset `cfg.name`; fields missing from `cfg` take the source's defaults."""
  if 'name' not in cfg:
    raise AelabError(f'the data config has no "name" field; set it to one of {", ".join(NAMES)}.')
  return _source(cfg['name']).load(cfg, seed)
