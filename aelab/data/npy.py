"""`npy`: activation vectors (or any rows) that a user dumped as one `.npy` file, memory-mapped:
never read whole into memory, so files larger than RAM train from disk.

    config.dataset = defaults.dataset('npy'); config.dataset.path = 'acts.npy'   # float32 [N, d]

The splits are contiguous ranges (a slice of a memory map is a memory map, not a copy): test is
the last `test_fraction` of the rows, val the `val_fraction` before it, train the rest, so dump
the rows in random order. With train.device_data='auto' a training split over 1 GiB stays on
disk and each block gathers only its batches' rows (aelab/trainer/batches.py).
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from aelab.data import options
from aelab.data.dataset import Dataset, Split
from aelab.errors import AelabError

SOURCES: dict[str, dict[str, Any]] = {
    'npy': {'path': None, 'val_fraction': 0.05, 'test_fraction': 0.05},
}


def _check_finite(x: np.ndarray, path: pathlib.Path, rows: int = 65536) -> None:
  """Every value finite, read `rows` rows at a time (the file stays a memory map); the first
  bad one is named."""
  for start in range(0, len(x), rows):
    block = np.asarray(x[start:start + rows])
    bad = ~np.isfinite(block)
    if bad.any():
      where = tuple(int(i) for i in np.argwhere(bad)[0])
      column = ', '.join(map(str, where[1:]))
      raise AelabError(f'{path}: row {start + where[0]}, column {column} is {block[where]}; every '
                       'value must be finite (drop or impute it)')


def load(cfg: Mapping[str, Any], seed: int) -> Dataset:
  del seed  # the splits are fixed ranges of the file
  name, fields = options.resolve(cfg, SOURCES, 'npy.load')
  path = pathlib.Path(options.string(fields, 'path')).expanduser()
  if not options.string(fields, 'path'):
    raise AelabError("dataset.path is required for dataset 'npy': a float32 [N, d] .npy file")
  try:
    x = np.load(path, mmap_mode='r')
  except (OSError, ValueError) as e:
    raise AelabError(f'dataset.path={str(path)!r} is not a readable .npy file ({e})') from None
  if not isinstance(x, np.ndarray):  # an .npz archive: np.load gives its NpzFile
    raise AelabError(f'dataset.path={str(path)!r} is an .npz archive; dataset npy reads one '
                     "array saved with np.save (dataset 'npz' reads archives)")
  if x.dtype != np.float32 or x.ndim < 2:
    raise AelabError(f'{path} holds {x.dtype} {x.shape}; dataset npy needs float32 [N, d] rows '
                     "(save them with np.save(path, rows.astype('float32')))")
  _check_finite(x, path)
  val_fraction, test_fraction = options.split_fractions(fields)
  n = len(x)
  n_test, n_val = (int(math.floor(f * n + 0.5)) for f in (test_fraction, val_fraction))
  train = x[:n - n_test - n_val]
  if not len(train):
    raise AelabError(f'{path} has {n} rows: none left to train on after val and test')
  return Dataset(
      name=name, train=Split(train, None), val=Split(x[n - n_test - n_val:n - n_test], None),
      test=Split(x[n - n_test:], None), feature_shape=tuple(x.shape[1:]), value_range=None,
      feature_names=None, num_classes=None,
      source={'name': name, 'path': str(path.absolute()), 'rows': n, 'memory_mapped': True,
              **{k: v for k, v in fields.items() if k != 'path'}})
