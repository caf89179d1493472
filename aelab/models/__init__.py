"""Model kinds by name: `build(cfg, feature_shape)`, the one place config.model.name is resolved.

A kind is one module here, aelab/models/<name>.py: OPTIONS (the fields of config.model and their
defaults, read by aelab.config.catalog), build(cfg, feature_shape) and its flax module, a
`base.Model` that answers what the kind can do (base.py). Nothing else lists the kinds.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import ml_collections

from aelab.config import catalog
from aelab.models.base import Dictionary, Export, Layer, Model, Step

__all__ = ['Dictionary', 'Export', 'Layer', 'Model', 'Step', 'build']


def build(cfg: ml_collections.ConfigDict, feature_shape: Sequence[int]) -> Model:
  """The model of config.model for examples of `feature_shape` (one-line errors for bad fields)."""
  entry = catalog.entry('model', cfg.get('name'))
  given = {k: v for k, v in cfg.items() if k != 'name'}
  catalog.check_options('model', entry.name, given, f'model {entry.name!r}')
  # Fields missing from a config saved before they existed take their defaults (an older run).
  full = ml_collections.ConfigDict({'name': entry.name, **entry.options, **given})
  return importlib.import_module(entry.module).build(full, feature_shape)
