"""Where a run's scalars go besides metrics.jsonl, the record: the writers of `train.writers`,
TensorBoard (the default), Weights & Biases (offline unless WANDB_MODE says otherwise) and
MLflow (a SQLite store in the run's or the sweep's directory unless told otherwise).

Each writer gets every row of metrics.jsonl once. On resume it is handed the rows the
checkpoint kept and sends only the (metric, step) pairs its store does not hold yet; the rows a
killed run wrote after its last checkpoint are recomputed identically, and those its store
already holds are not sent again. So a resumed run's history equals an unbroken run's. A writer
that fails at run time (disk, server) costs one warning line and is off for the rest of the run.

    writers = tracking.open_all(config, workdir)   # [] on processes other than the first
"""

from __future__ import annotations

import importlib.util
import pathlib
from collections.abc import Sequence

import ml_collections

from aelab.errors import AelabError
from aelab.tracking.writer import Writer

# writer -> the package it needs (and the pip extra that installs it)
WRITERS = {'tensorboard': None, 'wandb': 'wandb', 'mlflow': 'mlflow'}


def check(names: Sequence[str]) -> tuple[str, ...]:
  """train.writers, checked: known writers whose packages are installed."""
  if isinstance(names, str) or not all(isinstance(n, str) for n in names):
    raise AelabError(f'train.writers must be a tuple of names, e.g. (\'tensorboard\', \'mlflow\'); '
                     f'got {names!r}')
  for name in names:
    if name not in WRITERS:
      raise AelabError(f'train.writers: unknown writer {name!r}; valid: {", ".join(WRITERS)}')
    package = WRITERS[name]
    if package and importlib.util.find_spec(package) is None:
      raise AelabError(f'train.writers has {name!r}, but the {package} package is not installed: '
                       f'pip install \'aelab[{name}]\' (or drop it from train.writers)')
  return tuple(dict.fromkeys(names))


def open_all(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> list[Writer]:
  """The writers of config.train.writers for the run in `workdir`, opened (a writer that cannot
  open warns and is left out)."""
  from aelab.tracking import identity
  run = identity.of(workdir)
  writers = []
  for name in check(config.train.writers):
    opener = _openers()[name]
    writers.append(Writer(name, lambda opener=opener: opener(config, run)))
  return [w for w in writers if w.store is not None]


def _openers():
  from aelab.tracking import mlflow_store, tensorboard_store, wandb_store
  return {'tensorboard': tensorboard_store.open_store, 'wandb': wandb_store.open_store,
          'mlflow': mlflow_store.open_store}
