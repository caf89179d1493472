"""The `codes` source: a dataset already split into train / val / test, e.g. the codes a trained
encoder gives each split (aelab/stacked writes them for the next stage of a stacked
autoencoder).

An .npz with `x_train`, `x_val`, `x_test` (float, [N, *feature_shape]) and, when labelled,
`y_train`, `y_val`, `y_test` (int labels); optional `value_range` ([low, high] of the values) and
`source` (JSON text: where the codes came from). The splits are used as they are: the seed does
not reshuffle them.

Codes too large to hold are a directory instead (`write_sharded`): `train/part-*.npy` (float32
shards, read from disk a window of `shuffle_buffer` rows at a time, as the `npy` source reads a
directory), `val.npy`, `test.npy`, `labels.npz` (`y_train`, `y_val`, `y_test`, when labelled:
labels are small, so they are held) and `codes.json` (value_range, source), written last: a
directory without it is unfinished.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aelab import files
from aelab.data import download, npy, options, shard_writer
from aelab.data.dataset import Dataset, Split
from aelab.errors import AelabError

SOURCES: dict[str, dict[str, Any]] = {'codes': {'path': None, 'shuffle_buffer': 262144}}
DONE = 'codes.json'
SHARD_BYTES = 1 << 30  # the largest training shard of a codes directory
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


def write_sharded(directory: str | Path, rows: int, produce, per_shard: int, chunk: int,
                  held: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray | None],
                  source: dict, progress=None) -> Path:
  """Writes a `codes` directory: the train split's `rows` codes from `produce(start, n)` into
  shards of `per_shard` rows (aelab/data/shard_writer.py: whole shards of an interrupted write
  are kept), `held` {'val': x, 'test': x}, `labels` {split: y or None}; codes.json last, with
  the value range [0, 1] where every code lies in it."""
  directory = Path(directory)
  shape = tuple(held['val'].shape[1:])
  parts = shard_writer.write(directory / 'train', rows, shape, produce, per_shard, chunk, progress)
  low, high = np.inf, -np.inf
  for x in [np.load(p, mmap_mode='r') for p in parts] + list(held.values()):
    for start in range(0, len(x), chunk):
      piece = np.asarray(x[start:start + chunk])
      low, high = min(low, float(piece.min())), max(high, float(piece.max()))
  for name, x in held.items():
    with files.atomic(directory / f'{name}.npy') as tmp, open(tmp, 'wb') as f:
      np.save(f, np.asarray(x, np.float32))
  if labels.get('train') is not None:
    with files.atomic(directory / 'labels.npz') as tmp, open(tmp, 'wb') as f:
      np.savez(f, **{f'y_{s}': np.asarray(labels[s], np.int32) for s in SPLITS})
  unit = 0.0 <= low and high <= 1.0
  files.write_json(directory / DONE, {'value_range': [0.0, 1.0] if unit else None,
                                      'rows': rows, 'source': source})
  return directory


def _load_sharded(path: Path, fields: Mapping[str, Any]) -> Dataset:
  """A `codes` directory (see the module docstring), its train split read from its shards."""
  if not (path / DONE).is_file():
    raise AelabError(f'dataset.path={str(path)!r} is a codes directory without {DONE}: its writing '
                     'was interrupted; rerun the command that writes it (a stacked run resumes it)')
  meta = json.loads((path / DONE).read_text())
  ds = npy.load({'name': 'npy', 'path': str(path / 'train'), 'val_path': str(path / 'val.npy'),
                 'test_path': str(path / 'test.npy'),
                 'shuffle_buffer': fields['shuffle_buffer']}, 0)
  y = {s: None for s in SPLITS}
  if (path / 'labels.npz').is_file():
    with np.load(path / 'labels.npz', allow_pickle=False) as npz:
      y = {s: npz[f'y_{s}'].astype(np.int32) for s in SPLITS}
  shards = dataclasses.replace(ds.shards, labels=y['train'])
  preview = shards.rows[0]
  low_high = meta.get('value_range')
  return dataclasses.replace(
      ds, name='codes', shards=shards,
      train=Split(ds.train.x, None if y['train'] is None else y['train'][:preview]),
      val=Split(ds.val.x, y['val']), test=Split(ds.test.x, y['test']),
      value_range=None if low_high is None else tuple(low_high),
      num_classes=None if y['train'] is None else int(y['train'].max()) + 1,
      source={'name': 'codes', 'path': str(path), **meta['source']})


def load(cfg: Mapping[str, Any], seed: int) -> Dataset:
  """Reads a `codes` .npz (see the module docstring); `seed` is not used."""
  del seed
  name, fields = options.resolve(cfg, SOURCES, 'codes.load')
  path = Path(options.string(fields, 'path')).expanduser()
  if path.is_dir():
    return _load_sharded(path, fields)
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
