"""`npy`: activation vectors (or any rows) that a user dumped as `.npy` files, memory-mapped:
never read whole into memory, so files larger than RAM train from disk.

    config.dataset = defaults.dataset('npy'); config.dataset.path = 'acts.npy'   # float32 [N, d]

One file: the splits are contiguous ranges (a slice of a memory map is a memory map, not a
copy): test is the last `test_fraction` of the rows, val the `val_fraction` before it, train the
rest, so dump the rows in random order. With train.device_data='auto' a training split over
1 GiB stays on disk and each block gathers only its batches' rows (aelab/trainer/batches.py).

Separate files: with `val_path` and `test_path` (both or neither), val and test are those files
and every row of `path` trains; the fractions are then not used.

A directory of shards: `path` may be a directory of `.npy` files, each float32 [n_i, *shape]
with the same row shape, taken in name order; the training set is their concatenation, never
loaded whole: its batches are read in order, a window of at least `shuffle_buffer` rows at a
time, and shuffled within the window (aelab/trainer/shard_batches.py). The dataset's `train`
split is then the first shard alone (a memory map), a preview for fitting the preprocessing and
initialising from data. Val and test are `val_path`/`test_path`, or else cut from the end of
the LAST shard: its last `test_fraction` of rows are test, the `val_fraction` before them val.

Ground truth (activations generated from known features, e.g. SynthSAEBench's saved to disk):
`truth_path` names an .npz with `directions` float [features, *shape] (the true features) and,
where known, `val_codes` / `test_codes` float [rows of that split, features] (each row's true
feature activations, 0 where silent); the `sae` evaluator then scores a dictionary against them
(MCC, uniqueness; with the codes also precision, recall, F1 and shrinkage).
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from aelab.data import options
from aelab.data.dataset import Dataset, Shards, Split
from aelab.errors import AelabError

SOURCES: dict[str, dict[str, Any]] = {
    'npy': {'path': None, 'val_fraction': 0.05, 'test_fraction': 0.05, 'val_path': None,
            'test_path': None, 'shuffle_buffer': 262144, 'truth_path': None},
}


def check_finite(block: np.ndarray, path: str | pathlib.Path, first_row: int = 0) -> None:
  """Every value of `block` (rows first_row.. of `path`) finite; the first bad one is named.
  Checked a few MiB at a time (a mask of the whole block would cost a pass of its own)."""
  step = max(1, (4 << 20) // max(1, block[:1].nbytes))
  for start in range(0, len(block), step):
    finite = np.isfinite(block[start:start + step])
    if not finite.all():
      where = tuple(int(i) for i in np.argwhere(~finite)[0])
      column = ', '.join(map(str, where[1:]))
      raise AelabError(f'{path}: row {first_row + start + where[0]}, column {column} is '
                       f'{block[(start + where[0],) + where[1:]]}; every value must be finite '
                       '(drop or impute it)')


def _check_finite(x: np.ndarray, path: pathlib.Path, rows: int = 65536) -> None:
  """Every value finite, read `rows` rows at a time (the file stays a memory map)."""
  for start in range(0, len(x), rows):
    check_finite(np.asarray(x[start:start + rows]), path, start)


def open_rows(path: pathlib.Path, field: str = 'path') -> np.ndarray:
  """`path` memory-mapped: a float32 [N, *shape] array saved with np.save (else AelabError)."""
  try:
    x = np.load(path, mmap_mode='r')
  except (OSError, ValueError) as e:
    raise AelabError(f'dataset.{field}={str(path)!r} is not a readable .npy file ({e})') from None
  if not isinstance(x, np.ndarray):  # an .npz archive: np.load gives its NpzFile
    raise AelabError(f'dataset.{field}={str(path)!r} is an .npz archive; dataset npy reads one '
                     "array saved with np.save (dataset 'npz' reads archives)")
  if x.dtype != np.float32 or x.ndim < 2:
    raise AelabError(f'{path} holds {x.dtype} {x.shape}; dataset npy needs float32 [N, d] rows '
                     "(save them with np.save(path, rows.astype('float32')))")
  return x


def _same_shape(x: np.ndarray, path: pathlib.Path, shape: tuple, reference: pathlib.Path) -> None:
  if tuple(x.shape[1:]) != shape:
    raise AelabError(f'{path} has rows of shape {tuple(x.shape[1:])} but {reference} has {shape}; '
                     'every file of dataset npy must have the same row shape')


def _path(fields: Mapping[str, Any], key: str) -> pathlib.Path | None:
  value = options.string(fields, key)
  return pathlib.Path(value).expanduser() if value else None


def _held_out(fields: Mapping[str, Any], shape: tuple,
              reference: pathlib.Path) -> tuple[Split, Split] | None:
  """(val, test) from dataset.val_path and test_path, checked; None when neither is given."""
  paths = [_path(fields, 'val_path'), _path(fields, 'test_path')]
  if not any(paths):
    return None
  if not all(paths):
    raise AelabError('dataset npy: give both dataset.val_path and dataset.test_path, or neither '
                     '(then val and test are cut from the end of dataset.path)')
  splits = []
  for field, path in zip(('val_path', 'test_path'), paths):
    x = open_rows(path, field)
    _same_shape(x, path, shape, reference)
    _check_finite(x, path)
    splits.append(Split(x, None))
  return splits[0], splits[1]


def _cut(x: np.ndarray, fields: Mapping[str, Any]) -> tuple[int, int]:
  """(n_val, n_test): the rows the fractions take from the end of `x`."""
  val_fraction, test_fraction = options.split_fractions(fields)
  return tuple(int(math.floor(f * len(x) + 0.5)) for f in (val_fraction, test_fraction))


def _one_file(path: pathlib.Path, fields: Mapping[str, Any]) -> tuple[Split, Split, Split, dict]:
  """(train, val, test, source fields) of a single .npy file."""
  x = open_rows(path)
  _check_finite(x, path)
  held = _held_out(fields, tuple(x.shape[1:]), path)
  if held is not None:
    return Split(x, None), *held, {'rows': len(x)}
  n_val, n_test = _cut(x, fields)
  n = len(x)
  if n - n_test - n_val <= 0:
    raise AelabError(f'{path} has {n} rows: none left to train on after val and test')
  return (Split(x[:n - n_test - n_val], None), Split(x[n - n_test - n_val:n - n_test], None),
          Split(x[n - n_test:], None), {'rows': n})


def _shard_files(directory: pathlib.Path) -> list[pathlib.Path]:
  files = sorted(p for p in directory.iterdir() if p.suffix == '.npy' and p.is_file())
  if not files:
    raise AelabError(f'dataset.path={str(directory)!r} is a directory with no .npy files; put the '
                     'training rows there as float32 [n, d] .npy shards (np.save)')
  return files


def _directory(directory: pathlib.Path,
               fields: Mapping[str, Any]) -> tuple[Split, Split, Split, dict, Shards]:
  """(train preview, val, test, source fields, shards) of a directory of .npy shards. Only the
  first shard and the held-out rows are checked for finite values here; the training rows are
  checked as they are read."""
  files = _shard_files(directory)
  arrays = [open_rows(p) for p in files]
  shape = tuple(arrays[0].shape[1:])
  for p, x in zip(files, arrays):
    _same_shape(x, p, shape, files[0])
  rows = [len(x) for x in arrays]
  held = _held_out(fields, shape, files[0])
  if held is None:
    last = arrays[-1]
    n_val, n_test = _cut(last, fields)
    rows[-1] = len(last) - n_val - n_test
    val = Split(last[rows[-1]:len(last) - n_test], None)
    test = Split(last[len(last) - n_test:], None)
    for split in (val, test):
      _check_finite(split.x, files[-1])
  else:
    val, test = held
  kept = [i for i, n in enumerate(rows) if n > 0]
  if not kept:
    raise AelabError(f'dataset.path={str(directory)!r} has no rows left to train on (val and test '
                     'are cut from the last shard); add shards or give val_path and test_path')
  first = arrays[kept[0]][:rows[kept[0]]]
  _check_finite(first, files[kept[0]])
  shards = Shards(paths=tuple(str(files[i].absolute()) for i in kept),
                  rows=tuple(rows[i] for i in kept),
                  shuffle_buffer=options.count(fields, 'shuffle_buffer', minimum=1))
  return Split(first, None), val, test, {'rows': len(shards), 'shards': len(kept)}, shards


def _truth(fields: Mapping[str, Any], shape: tuple, val: Split,
           test: Split) -> tuple[np.ndarray | None, Split, Split]:
  """(the true directions, val, test with their true codes) from dataset.truth_path, if given."""
  path = _path(fields, 'truth_path')
  if path is None:
    return None, val, test
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {k: npz[k] for k in npz.files}
  except (OSError, ValueError) as e:
    raise AelabError(f'dataset.truth_path={str(path)!r} is not a readable .npz ({e})') from None
  directions = arrays.get('directions')
  if directions is None or directions.ndim < 2 or tuple(directions.shape[1:]) != shape:
    raise AelabError(f'{path} needs `directions` [features, {", ".join(map(str, shape))}] (the '
                     f'true features, one per row); it has {sorted(arrays)}')
  splits = []
  for name, split in (('val', val), ('test', test)):
    codes = arrays.get(f'{name}_codes')
    if codes is not None and codes.shape != (len(split), len(directions)):
      raise AelabError(f'{path}: {name}_codes has shape {codes.shape}; it must be [{len(split)}, '
                       f'{len(directions)}] (a row per {name} row, a column per true feature)')
    splits.append(split if codes is None else
                  Split(split.x, None, truth_codes=np.asarray(codes, np.float32)))
  return np.asarray(directions, np.float32), splits[0], splits[1]


def load(cfg: Mapping[str, Any], seed: int) -> Dataset:
  del seed  # the splits are fixed ranges of the files
  name, fields = options.resolve(cfg, SOURCES, 'npy.load')
  path = _path(fields, 'path')
  if path is None:
    raise AelabError("dataset.path is required for dataset 'npy': a float32 [N, d] .npy file or "
                     'a directory of them')
  options.count(fields, 'shuffle_buffer', minimum=1)
  shards = None
  if path.is_dir():
    train, val, test, facts, shards = _directory(path, fields)
  else:
    train, val, test, facts = _one_file(path, fields)
  truth, val, test = _truth(fields, tuple(train.x.shape[1:]), val, test)
  return Dataset(
      name=name, train=train, val=val, test=test, feature_shape=tuple(train.x.shape[1:]),
      value_range=None, feature_names=None, num_classes=None, shards=shards, truth=truth,
      source={'name': name, 'path': str(path.absolute()), **facts, 'memory_mapped': True,
              **{k: v for k, v in fields.items() if k != 'path'}})
