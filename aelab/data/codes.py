"""The `codes` source: a dataset already split into train / val / test, e.g. the codes a trained
encoder gives each split (aelab/stacked writes them for the next stage of a stacked
autoencoder).

An .npz with `x_train`, `x_val`, `x_test` (float, [N, *feature_shape]) and, when labelled,
`y_train`, `y_val`, `y_test` (int labels); optional `value_range` ([low, high] of the values) and
`source` (JSON text: where the codes came from). The splits are used as they are: the seed does
not reshuffle them.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aelab import files
from aelab.data import download, options
from aelab.data.dataset import Dataset, Split
from aelab.errors import AelabError

SOURCES: dict[str, dict[str, Any]] = {'codes': {'path': None}}
SPLITS = ('train', 'val', 'test')


def write(path: str | Path, splits: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
          value_range: tuple[float, float] | None, source: dict) -> Path:
  """Writes a `codes` dataset atomically: {split: (x, y)}."""
  arrays = {}
  for name in SPLITS:
    x, y = splits[name]
    arrays[f'x_{name}'] = np.asarray(x, np.float32)
    if y is not None:
      arrays[f'y_{name}'] = np.asarray(y, np.int32)
  if value_range is not None:
    arrays['value_range'] = np.asarray(value_range, np.float64)
  arrays['source'] = np.asarray(json.dumps(source))
  with files.atomic(path) as tmp:
    with open(tmp, 'wb') as f:
      np.savez(f, **arrays)
  return Path(path)


def load(cfg: Mapping[str, Any], seed: int) -> Dataset:
  """Reads a `codes` .npz (see the module docstring); `seed` is not used."""
  del seed
  name, fields = options.resolve(cfg, SOURCES, 'codes.load')
  path = Path(options.string(fields, 'path')).expanduser()
  if not path.is_file() or not zipfile.is_zipfile(path):
    raise AelabError(f'dataset.path={str(path)!r} is not a codes .npz file (x_train, x_val, '
                     'x_test, ...); it is written by the stage that encodes the data')
  with np.load(path, allow_pickle=False) as npz:
    arrays = {k: npz[k] for k in npz.files}
  missing = [f'x_{s}' for s in SPLITS if f'x_{s}' not in arrays]
  if missing:
    raise AelabError(f'{path}: no {", ".join(missing)}; a codes file holds x_train, x_val, x_test')
  splits = {s: Split(arrays[f'x_{s}'].astype(np.float32),
                     arrays[f'y_{s}'].astype(np.int32) if f'y_{s}' in arrays else None)
            for s in SPLITS}
  y = splits['train'].y
  low_high = arrays.get('value_range')
  source = {'name': name, 'path': str(path), 'md5': download.md5_of(path.read_bytes()),
            **json.loads(str(arrays.get('source', '{}')))}
  return Dataset(name=name, train=splits['train'], val=splits['val'], test=splits['test'],
                 feature_shape=tuple(splits['train'].x.shape[1:]),
                 value_range=None if low_high is None else tuple(float(v) for v in low_high),
                 feature_names=None, num_classes=None if y is None else int(y.max()) + 1,
                 source=source)
