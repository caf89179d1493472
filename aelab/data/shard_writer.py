"""Rows written as a directory of `.npy` shards, the layout the `npy` source reads
(aelab/data/npy.py): `part-00000.npy`, `part-00001.npy`, ... each float32 [n_i, *row_shape] of
at most `shard_bytes`, in row order.

    shard_writer.write('acts/train', N, (d,), lambda start, n: x[start:start + n], per_shard,
                       chunk)

Each shard is written under a temporary name and renamed when whole, so an interrupted write
leaves only whole shards, and writing again into the same directory keeps them and writes the
rest (`produce` must give the same rows for the same range: a pure function of the range).
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Callable

import numpy as np

from aelab.errors import AelabError

PREFIX = 'part-'


def shard_rows(row_shape: tuple[int, ...], shard_bytes: int, multiple: int = 1) -> int:
  """The rows of a whole shard: as many as fit in `shard_bytes`, a multiple of `multiple`."""
  row_bytes = 4 * math.prod(row_shape)
  rows = shard_bytes // row_bytes // multiple * multiple
  if rows < 1:
    raise AelabError(f'a shard of {shard_bytes} bytes holds no {multiple} rows of {row_bytes} '
                     'bytes; give larger shards')
  return rows


def paths(directory: str | pathlib.Path, rows: int, per_shard: int) -> list[pathlib.Path]:
  """The shards' paths, in order."""
  return [pathlib.Path(directory) / f'{PREFIX}{i:05d}.npy' for i in range(-(-rows // per_shard))]


def write(directory: str | pathlib.Path, rows: int, row_shape: tuple[int, ...],
          produce: Callable[[int, int], np.ndarray], per_shard: int, chunk: int,
          progress: Callable[[int], None] | None = None) -> list[pathlib.Path]:
  """Writes rows 0 .. rows - 1, `produce(start, n)` giving rows start .. start + n - 1 (n <=
  `chunk`), into shards of `per_shard` rows; shards already whole are kept. `progress(n)` is
  called with each chunk's row count (and with the rows of the shards kept)."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  out = paths(directory, rows, per_shard)
  for i, path in enumerate(out):
    start = i * per_shard
    n = min(per_shard, rows - start)
    if _whole(path, (n, *row_shape)):
      if progress:
        progress(n)
      continue
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    try:
      shard = np.lib.format.open_memmap(tmp, mode='w+', dtype=np.float32, shape=(n, *row_shape))
      for at in range(0, n, chunk):
        block = np.asarray(produce(start + at, min(chunk, n - at)), np.float32)
        if block.shape != (min(chunk, n - at), *row_shape):
          raise AelabError(f'rows {start + at}..: got an array of shape {block.shape}; expected '
                           f'{(min(chunk, n - at), *row_shape)}')
        shard[at:at + len(block)] = block
        if progress:
          progress(len(block))
      shard.flush()
      del shard
      os.replace(tmp, path)
    finally:
      tmp.unlink(missing_ok=True)
  return out


def _whole(path: pathlib.Path, shape: tuple[int, ...]) -> bool:
  """Whether `path` is a shard of `shape` already (a shard is only ever renamed whole)."""
  if not path.is_file():
    return False
  try:
    held = np.load(path, mmap_mode='r')
  except (OSError, ValueError):
    return False
  return held.shape == shape and held.dtype == np.float32
