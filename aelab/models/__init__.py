"""Models by name: `build(cfg, feature_shape)` for the trainer. A config file gets a model's fields
from `aelab.config.defaults.model(name, ...)`; each model module's DEFAULTS is that table's entry."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import ml_collections

from aelab.config import check_choice, check_fields
from aelab.models import classifier, conv, dense, sae, vae

_MODULES = {'dense': dense, 'conv': conv, 'vae': vae, 'classifier': classifier, 'sae': sae}
NAMES = tuple(_MODULES)


def _module(name: str):
  check_choice(name, NAMES, 'model')
  return _MODULES[name]


def build(cfg: ml_collections.ConfigDict, feature_shape: Sequence[int]) -> nn.Module:
  module = _module(cfg.name)
  check_fields(cfg, ('name', *module.DEFAULTS), f'model {cfg.name!r}')
  return module.build(cfg, feature_shape)


def layer_activations(cfg: ml_collections.ConfigDict) -> dict[str, str]:
  return _module(cfg.name).layer_activations(cfg)


def filters(cfg: ml_collections.ConfigDict, params, feature_shape: Sequence[int]):
  """The first encoder layer's weights as images [n, h, w, c] (None where they are not images)."""
  return _module(cfg.name).filters(params, feature_shape)


def reconstructs(cfg: ml_collections.ConfigDict) -> bool:
  """Whether the model outputs reconstructions of its input (False for the classifier)."""
  return getattr(_module(cfg.name), 'RECONSTRUCTS', True)


def check_labels(cfg: ml_collections.ConfigDict, dataset) -> None:
  """AelabError when the dataset's labels do not fit the model (a classifier's classes)."""
  check = getattr(_module(cfg.name), 'check_labels', None)
  if check is not None:
    check(cfg, dataset)


def data_init(cfg: ml_collections.ConfigDict, rows) -> dict:
  """Initial parameters a model takes from its training rows (an SAE's b_dec); `rows()` gives
  them preprocessed (at most 20,000), called only by models that need them."""
  init = getattr(_module(cfg.name), 'data_init', None)
  return {} if init is None else init(cfg, rows())
