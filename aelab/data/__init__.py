"""Datasets by name: `load(cfg, seed)`, the one place `config.dataset.name` is resolved.

    cfg = aelab.config.defaults.dataset('mnist'); cfg.train_limit = 1000
    ds = data.load(cfg, seed=0)      # -> Dataset (see aelab/data/dataset.py)

A source is a module with SOURCES (dataset name -> its fields and defaults, read by
aelab.config.catalog) and load(cfg, seed) -> Dataset: the modules of this package (files,
downloads, generated sets) and, above the trained runs they read, aelab/analysis/activations.py.
Nothing else lists them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import ml_collections

from aelab.config import catalog
from aelab.data.dataset import Dataset, Split, Stream, epoch_permutation, split_off
from aelab.errors import AelabError

__all__ = ['Dataset', 'Split', 'Stream', 'epoch_permutation', 'load', 'split_off']


def load(cfg: ml_collections.ConfigDict | Mapping[str, Any], seed: int) -> Dataset:
  """Loads dataset `cfg.name`; fields missing from `cfg` take the source's defaults."""
  if 'name' not in cfg:
    raise AelabError('the data config has no "name" field; set it to one of '
                     f'{", ".join(catalog.names("source"))}.')
  return importlib.import_module(catalog.module('source', cfg['name'])).load(cfg, seed)
