"""IDX files (the MNIST format) and the `mnist` / `fashion_mnist` sources.

IDX layout: two zero bytes, a type byte (0x08 = uint8), the number of dimensions, then one
big-endian uint32 per dimension, then the values (big-endian). Files may be gzipped.
Images (magic 2051) are [N, rows, cols] uint8, labels (magic 2049) are [N] uint8.
Where files are looked for is documented in `aelab.data.locate`.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from aelab.data import download, locate, options
from aelab.data.dataset import Dataset, Split, split_off
from aelab.errors import AelabError

SOURCES: dict[str, dict[str, Any]] = {
    'mnist': {'path': None, 'val_fraction': 0.1, 'train_limit': 0, 'test_limit': 0},
    'fashion_mnist': {'path': None, 'val_fraction': 0.1, 'train_limit': 0, 'test_limit': 0},
}

LABEL_NAMES = {
    'mnist': tuple(str(d) for d in range(10)),
    'fashion_mnist': ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
                      'Sneaker', 'Bag', 'Ankle boot'),
}
_DTYPES = {0x08: '>u1', 0x09: '>i1', 0x0B: '>i2', 0x0C: '>i4', 0x0D: '>f4', 0x0E: '>f8'}
_CODES = {np.dtype(v).newbyteorder('='): k for k, v in _DTYPES.items()}


# --- the IDX format ---------------------------------------------------------------------------

def gunzip(data: bytes, origin: str = '<bytes>') -> bytes:
  """Decompresses gzip bytes; returns other bytes unchanged."""
  if data[:2] != b'\x1f\x8b':
    return data
  try:
    return gzip.decompress(data)
  except (OSError, EOFError, zlib.error) as e:
    raise AelabError(f'{origin}: not a valid gzip file ({e}); it is truncated or corrupt. '
                     'Delete it and fetch it again.') from None


def decode(data: bytes, origin: str = '<bytes>') -> np.ndarray:
  """Parses IDX bytes (gzipped or raw) into an array; AelabError on corruption."""
  data = gunzip(data, origin)
  if len(data) < 4 or data[:2] != b'\0\0' or data[2] not in _DTYPES:
    raise AelabError(
        f'{origin}: not an IDX file (first bytes {data[:4].hex() or "<empty>"}; expected '
        '00 00 <type> <ndim>, e.g. magic 2051 for images, 2049 for labels). '
        'Delete it and fetch it again.')
  ndim, dtype = data[3], np.dtype(_DTYPES[data[2]])
  start = 4 + 4 * ndim
  if ndim == 0 or len(data) < start:
    raise AelabError(f'{origin}: IDX header is truncated or has {ndim} dimensions. '
                     'Delete the file and fetch it again.')
  dims = tuple(int(d) for d in np.frombuffer(data, '>u4', count=ndim, offset=4))
  expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
  if len(data) - start != expected:
    raise AelabError(
        f'{origin}: IDX header says shape {dims} ({expected} data bytes) but the file holds '
        f'{len(data) - start}; it is truncated or corrupt. Delete it and fetch it again.')
  return np.frombuffer(data, dtype, offset=start).reshape(dims).astype(dtype.newbyteorder('='))


def read_idx(path: str | Path) -> np.ndarray:
  """Reads an IDX file (gzipped or raw)."""
  return decode(_read_bytes(Path(path)), str(path))


def write_idx(path: str | Path, array: np.ndarray) -> None:
  """Writes `array` as an IDX file; gzipped when `path` ends in `.gz`."""
  array = np.asarray(array)
  code = _CODES.get(array.dtype.newbyteorder('='))
  if code is None or array.ndim == 0:
    raise AelabError(f'cannot write {array.dtype} array of shape {array.shape} as IDX; '
                     'use uint8, int8, int16, int32, float32 or float64 with ndim >= 1.')
  header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, '>u4').tobytes()
  data = header + array.astype(_DTYPES[code]).tobytes()
  Path(path).write_bytes(gzip.compress(data) if str(path).endswith('.gz') else data)


def _read_bytes(path: Path) -> bytes:
  try:
    return path.read_bytes()
  except OSError as e:
    raise AelabError(f'cannot read {path}: {e.strerror or e}.') from None


# --- the mnist / fashion_mnist sources -------------------------------------------------------

def load(cfg: Mapping[str, Any], seed: int) -> Dataset:
  """Loads `mnist` or `fashion_mnist`: images [N, 28, 28, 1] float32 in [0, 1], int32 labels."""
  name, fields = options.resolve(cfg, SOURCES, 'idx.load')
  val_fraction = options.fraction(fields, 'val_fraction')
  train_limit = options.count(fields, 'train_limit')
  test_limit = options.count(fields, 'test_limit')
  directory, how, files = _locate(name, options.string(fields, 'path'))

  arrays, file_info = {}, {}
  for role in download.ROLES:
    arrays[role], file_info[role] = _read_checked(name, role, files[role])
  for split in ('train', 'test'):
    _check_pair(name, split, files, arrays[f'{split}_images'], arrays[f'{split}_labels'])
  if arrays['train_images'].shape[1:] != arrays['test_images'].shape[1:]:
    raise AelabError(f'{name}: train images are {arrays["train_images"].shape[1:]} but test '
                     f'images are {arrays["test_images"].shape[1:]}; use files of one dataset.')

  train_rows = len(arrays['train_images'])
  train_x = arrays['train_images'][:train_limit or None]
  train_y = arrays['train_labels'][:train_limit or None]
  (tx, ty), (vx, vy) = split_off(train_x, train_y, val_fraction, seed)
  if len(tx) == 0:
    raise AelabError(f'{name}: {len(train_x)} training rows leave none after the val split; '
                     'raise dataset.train_limit or lower dataset.val_fraction.')
  test = _split(arrays['test_images'][:test_limit or None],
                arrays['test_labels'][:test_limit or None])
  source = {
      'name': name, 'directory': str(directory), 'found_via': how, 'files': file_info,
      'train_rows_in_file': train_rows, 'test_rows_in_file': len(arrays['test_images']),
      'train_limit': train_limit, 'test_limit': test_limit, 'val_fraction': val_fraction,
      'seed': int(seed), 'label_names': list(LABEL_NAMES[name]),
      'transform': 'x = uint8 / 255 as float32, shape [N, rows, cols, 1]; val rows = '
                   'split_off(first train_limit train rows, val_fraction, seed)',
  }
  return Dataset(
      name=name, train=_split(tx, ty), val=_split(vx, vy), test=test,
      feature_shape=(*arrays['train_images'].shape[1:], 1), value_range=(0.0, 1.0),
      feature_names=None, num_classes=10, source=source)


def _split(images: np.ndarray, labels: np.ndarray) -> Split:
  x = images.astype(np.float32)[..., None] / np.float32(255)
  return Split(x=x, y=labels.astype(np.int32))


def _locate(name: str, path: str) -> tuple[Path, str, dict[str, Path]]:
  """Returns (directory, how it was found, role -> file)."""
  needed = [download.OFFICIAL[name][r].filename for r in download.ROLES]
  if path:
    directory = Path(path).expanduser()
    if not directory.is_dir():
      raise AelabError(f'dataset.path={path!r} is not a directory. Point it at the directory '
                       f'holding {", ".join(needed)}, or unset it to search and download.')
    files = locate.find_files(name, directory)
    if len(files) < 4:
      raise AelabError(
          f'dataset.path={path!r} lacks the {name} '
          f'{", ".join(r.replace("_", " ") for r in download.ROLES if r not in files)} '
          f'file(s). Needed: {", ".join(needed)} (or raw, un-gzipped copies); '
          f'file name rules: see aelab/data/locate.py.')
    return directory, 'dataset.path', files

  searched = []
  for how, directory in locate.candidate_dirs(name):
    files = locate.find_files(name, directory)
    other = _other_dataset(name, files) if len(files) == 4 else None
    if len(files) == 4 and other is None:
      return directory, how, files
    state = ('missing' if not directory.exists() else f'holds the {other} files' if other else
             f'has {", ".join(p.name for p in files.values())}' if files else 'no IDX files')
    searched.append(f'{directory} ({how}: {state})')

  cache = locate.cache_dir(name)
  files = locate.find_files(name, cache)
  try:
    for role in download.ROLES:
      if role not in files:
        official = download.OFFICIAL[name][role]
        urls = [m + official.filename for m in download.MIRRORS[name]]
        files[role] = download.fetch(urls, cache / official.filename, official.md5)
  except download.DownloadError as e:
    raise AelabError(_offline_message(name, searched, needed, e)) from None
  return cache, 'download', files


def _other_dataset(name: str, files: Mapping[str, Path]) -> str | None:
  """The other dataset whose published test labels these are (MNIST and Fashion-MNIST share file
  names, so $AELAB_DATA_DIR holding one must not stop the search for the other), else None."""
  path = files['test_labels']
  if not locate.is_official(name, 'test_labels', path):
    return None
  data = _read_bytes(path)
  md5s = {download.md5_of(data), download.md5_of(gunzip(data, str(path)))}
  for other, table in download.OFFICIAL.items():
    if other != name and md5s & {table['test_labels'].md5, table['test_labels'].content_md5}:
      return other
  return None


def _offline_message(name: str, searched: list[str], needed: list[str],
                     error: download.DownloadError) -> str:
  """One line: what is needed, where it was looked for, what the download said, the fixes."""
  env = 'set' if os.environ.get('AELAB_DATA_DIR') else 'not set'
  tried = '; '.join(f'{u}: {r}' for u, r in error.failures)
  return (f'the {name} IDX files ({", ".join(needed)}, gzipped or raw) are not here and could not '
          f'be downloaded. Searched ($AELAB_DATA_DIR {env}): {"; ".join(searched)}. Download '
          f'into {locate.cache_dir(name)} failed: {tried}. Fix: put the files in '
          f'$AELAB_DATA_DIR/{name}/ (export AELAB_DATA_DIR=/your/data), or set dataset.path to '
          f'the directory holding them, or let the download reach a mirror '
          f'({", ".join(download.MIRRORS[name])})')


def _read_checked(name: str, role: str, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
  """Reads one file; md5-checks it when it has a published name."""
  data = _read_bytes(path)
  info: dict[str, Any] = {'path': str(path), 'md5': download.md5_of(data)}
  content = gunzip(data, str(path))
  array = decode(content, str(path))
  if locate.is_official(name, role, path):
    official = download.OFFICIAL[name][role]
    content_md5 = info['content_md5'] = download.md5_of(content)
    if official.md5 == info['md5']:
      info['check'] = 'md5 of the file matches the published one'
    elif official.content_md5 == content_md5:
      info['check'] = 'md5 of the decompressed content matches the published one'
    else:
      raise AelabError(
          f'{path}: md5 {info["md5"]} (decompressed {content_md5}) does not match the published '
          f'{name} file {official.filename} (md5 {official.md5}, decompressed '
          f'{official.content_md5}). It is corrupt or from another dataset: delete it '
          '(it is downloaded again when needed) or replace it with the right file.')
  else:
    info['check'] = 'not a published file name: IDX header validated, no checksum'
  return array, info


def _check_pair(name: str, split: str, files: Mapping[str, Path], images: np.ndarray,
                labels: np.ndarray) -> None:
  img_path, lbl_path = files[f'{split}_images'], files[f'{split}_labels']
  if images.dtype != np.uint8 or images.ndim != 3:
    raise AelabError(f'{img_path}: expected uint8 images [N, rows, cols] (IDX magic 2051); got '
                     f'{images.dtype} {images.shape}. Is this an image file?')
  if labels.dtype != np.uint8 or labels.ndim != 1:
    raise AelabError(f'{lbl_path}: expected uint8 labels [N] (IDX magic 2049); got '
                     f'{labels.dtype} {labels.shape}. Is this a label file?')
  if len(images) != len(labels):
    raise AelabError(f'{name} {split}: {img_path.name} holds {len(images)} images but '
                     f'{lbl_path.name} holds {len(labels)} labels; use matching files.')
  if labels.size and labels.max() > 9:
    row = int(np.argmax(labels > 9))
    raise AelabError(f'{lbl_path}: label {labels[row]} at index {row} is not a class 0-9; '
                     'the file is corrupt or not a label file.')
