"""The `csv` and `npz` sources: numeric tables with an optional label column.

CSV rules: parsed with the `csv` module. `header='auto'` treats the first row as a header
when any of its (non-label) cells is non-empty and not a number; a label column given by
name implies a header. Every feature cell must be a finite number. Labels that are all
non-negative integers are used as they are; otherwise they are class names, mapped in
sorted order to 0..K-1 (`source['label_names']`). Splits: test first, then val from the
rest, both with `split_off(..., seed)`.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aelab.data import download, options
from aelab.data.dataset import Dataset, Split, split_off
from aelab.errors import AelabError

_FLOAT32_MAX = float(np.finfo(np.float32).max)
SOURCES: dict[str, dict[str, Any]] = {
    'csv': {'path': None, 'label_column': '', 'columns': '', 'header': 'auto', 'delimiter': ',',
            'val_fraction': 0.1, 'test_fraction': 0.2},
    'npz': {'path': None, 'val_fraction': 0.1, 'test_fraction': 0.2},
}


def load(cfg: Mapping[str, Any], seed: int) -> Dataset:
  """Loads a `csv` or `npz` table (see the module docstring for the rules)."""
  name, fields = options.resolve(cfg, SOURCES, 'tabular.load')
  val_fraction, test_fraction = options.split_fractions(fields)
  path_str = options.string(fields, 'path')
  if not path_str:
    raise AelabError(f'dataset {name!r} needs dataset.path: the {name} file to read '
                     f'(e.g. --config.data.path=/data/table.{name}).')
  path = Path(path_str).expanduser()
  if not path.is_file():
    raise AelabError(f'dataset.path={path_str!r} is not a file; point it at the {name} file.')
  if name == 'csv':
    x, y, names, extra = read_csv(path, options.string(fields, 'label_column'),
                                  options.string(fields, 'columns'),
                                  options.choice(fields, 'header', ('auto', 'yes', 'no')),
                                  _delimiter(fields['delimiter']))
  else:
    x, y, names, extra = read_npz(path)
  if len(x) == 0:
    raise AelabError(f'{path}: no data rows.')
  (rest_x, rest_y), (test_x, test_y) = split_off(x, y, test_fraction, seed)
  (train_x, train_y), (val_x, val_y) = split_off(rest_x, rest_y, val_fraction, seed)
  if len(train_x) == 0:
    raise AelabError(f'{path}: {len(x)} rows leave no training rows after the val/test split; '
                     'lower dataset.val_fraction / dataset.test_fraction or add rows.')
  source = {'name': name, 'path': str(path), 'md5': download.md5_of(path.read_bytes()),
            'rows': len(x), 'val_fraction': val_fraction, 'test_fraction': test_fraction,
            'seed': int(seed), **extra}
  num_classes = None if y is None else int(y.max()) + 1 if len(y) else 0
  return Dataset(
      name=name, train=Split(train_x, train_y), val=Split(val_x, val_y),
      test=Split(test_x, test_y), feature_shape=tuple(x.shape[1:]), value_range=None,
      feature_names=names, num_classes=num_classes, source=source)


def _delimiter(value: Any) -> str:
  value = '\t' if value in ('\\t', 'tab') else value
  if not isinstance(value, str) or len(value) != 1:
    raise AelabError(f'dataset.delimiter must be one character (or "\\t"); got {value!r}.')
  return value


# --- CSV ------------------------------------------------------------------------------------

def read_csv(path: Path, label_column: str = '', columns: str = '', header: str = 'auto',
             delimiter: str = ',', comment: str = '') -> tuple[np.ndarray, np.ndarray | None,
                                                               tuple[str, ...], dict[str, Any]]:
  """Returns (x float32 [N, d], y int32 [N] or None, feature names, provenance extras).

  With `comment`, lines starting with it are skipped; their text (after the marker and one
  space) is returned in extras['comments'].
  """
  rows, line_nums, comments = _read_rows(path, delimiter, comment)
  if not rows:
    raise AelabError(f'{path}: the file is empty.')
  width = len(rows[0])
  has_header = _has_header(rows[0], label_column, header, path)
  names = ([c.strip() for c in rows[0]] if has_header else [f'f{i}' for i in range(width)])
  body, body_lines = (rows[1:], line_nums[1:]) if has_header else (rows, line_nums)
  for row, line in zip(body, body_lines):
    if len(row) != width:
      raise AelabError(
          f'{path}, row {line}: {len(row)} cells, expected {width} '
          f'({"as in the header" if has_header else "as in the first row"}). '
          'Fix the row (a missing or extra delimiter?).')
  label_idx = (_column_index(label_column, names, has_header, path, 'dataset.label_column')
               if label_column else None)
  if columns:
    feature_idx = [_column_index(tok.strip(), names, has_header, path, 'dataset.columns')
                   for tok in columns.split(',') if tok.strip()]
    if len(set(feature_idx)) != len(feature_idx):
      raise AelabError(f'dataset.columns={columns!r} names a column twice; list each once.')
    if label_idx in feature_idx:
      raise AelabError(f'dataset.columns={columns!r} includes the label column '
                       f'{names[label_idx]!r}; remove it from dataset.columns.')
  else:
    feature_idx = [i for i in range(width) if i != label_idx]
  if not feature_idx:
    raise AelabError(f'{path}: no feature columns left; check dataset.columns / label_column.')
  cells = np.array(body, dtype=str).reshape(len(body), width)
  x = _parse_features(cells[:, feature_idx], [names[i] for i in feature_idx], body_lines, path)
  extra: dict[str, Any] = {'header': has_header, 'columns': [names[i] for i in feature_idx]}
  if comment:
    extra['comments'] = comments
  y = None
  if label_idx is not None:
    y, label_names = _parse_labels(cells[:, label_idx], names[label_idx], body_lines, path)
    extra['label_column'] = names[label_idx]
    if label_names is not None:
      extra['label_names'] = label_names
  return x, y, tuple(names[i] for i in feature_idx), extra


def _read_rows(path: Path, delimiter: str,
               comment: str = '') -> tuple[list[list[str]], list[int], list[str]]:
  """Non-blank rows, the file line number on which each ends, and the comment lines' text."""
  rows, lines, comments = [], [], []
  try:
    with open(path, newline='', encoding='utf-8-sig') as f:
      text = f.read()
  except UnicodeDecodeError as e:
    raise AelabError(f'{path}: cannot parse as UTF-8 CSV ({e}). Is this a text CSV file?') from None
  body = list(io.StringIO(text, newline=''))
  if comment:
    comments = [line[len(comment):].rstrip('\r\n').removeprefix(' ') for line in body
                if line.startswith(comment)]
    body = ['\n' if line.startswith(comment) else line for line in body]
  try:
    reader = csv.reader(body, delimiter=delimiter)
    for row in reader:
      if row and any(c.strip() for c in row):
        rows.append(row)
        lines.append(reader.line_num)
  except csv.Error as e:
    raise AelabError(f'{path}: cannot parse as UTF-8 CSV ({e}). Is this a text CSV file?') from None
  return rows, lines, comments


def first_row(path: Path, delimiter: str = ',', comment: str = '') -> list[str]:
  """The first non-blank row's cells, stripped (a header, if the file has one)."""
  rows, _, _ = _read_rows(path, delimiter, comment)
  if not rows:
    raise AelabError(f'{path}: the file is empty.')
  return [c.strip() for c in rows[0]]


def is_number(text: str, kind: type = float) -> bool:
  """Whether `text` parses as a `kind` (float or int)."""
  try:
    kind(text)
    return True
  except ValueError:
    return False


def _has_header(first: Sequence[str], label_column: str, header: str, path: Path) -> bool:
  if header != 'auto':
    return header == 'yes'
  if label_column and not is_number(label_column, int):
    return True  # A label column named by name needs a header.
  skip = None
  if label_column and -len(first) <= int(label_column) < len(first):
    skip = int(label_column) % len(first)
  return any(c.strip() and not is_number(c) for i, c in enumerate(first) if i != skip)


def _column_index(token: str, names: Sequence[str], has_header: bool, path: Path,
                  field: str) -> int:
  if has_header and token in names:
    return list(names).index(token)
  if is_number(token, int) and -len(names) <= int(token) < len(names):
    return int(token) % len(names)
  valid = (f'column names {", ".join(names)} or ' if has_header else 'no names (no header); ')
  raise AelabError(f'{field}: {token!r} is not a column of {path}; valid: {valid}'
                   f'0-based indices 0..{len(names) - 1} (negative counts from the end).')


def _parse_features(cells: np.ndarray, names: Sequence[str], lines: Sequence[int],
                    path: Path) -> np.ndarray:
  try:  # Fast path; on any problem, scan cell by cell to report the first bad one.
    values = np.char.strip(cells).astype(np.float64)
    if (np.abs(values) <= _FLOAT32_MAX).all():  # Also False for NaN.
      return values.astype(np.float32)
  except ValueError:
    pass
  for r in range(cells.shape[0]):
    for c in range(cells.shape[1]):
      _check_cell(str(cells[r, c]), names[c], lines[r], path)
  return np.array([[float(v) for v in row] for row in cells], np.float32)


def _check_cell(text: str, name: str, line: int, path: Path) -> None:
  where = f'{path}, row {line}, column {name!r}'
  if not text.strip():
    raise AelabError(f'{where}: empty cell. Fill it in, drop the row, or leave the column '
                     'out with dataset.columns.')
  try:
    value = float(text)
  except ValueError:
    raise AelabError(f'{where}: {text!r} is not a number. Fix the cell, or leave the column '
                     'out with dataset.columns (or make it dataset.label_column).') from None
  if not abs(value) <= _FLOAT32_MAX:
    raise AelabError(f'{where}: {text!r} is not a finite float32 number. Impute or drop the '
                     'row, or leave the column out with dataset.columns.')


def _parse_labels(cells: np.ndarray, name: str, lines: Sequence[int],
                  path: Path) -> tuple[np.ndarray, list[str] | None]:
  texts = [str(c).strip() for c in cells]
  for text, line in zip(texts, lines):
    if not text:
      raise AelabError(f'{path}, row {line}, label column {name!r}: empty label. '
                       'Fill it in or drop the row.')
  if all(t.isdigit() for t in texts):
    return np.array([int(t) for t in texts], np.int32), None
  label_names = sorted(set(texts))
  index = {n: i for i, n in enumerate(label_names)}
  return np.array([index[t] for t in texts], np.int32), label_names


# --- NPZ ------------------------------------------------------------------------------------

def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...] | None,
                                  dict[str, Any]]:
  """Reads arrays `x` [N, ...] and optional `y` [N] (non-negative integers) from an .npz."""
  if not zipfile.is_zipfile(path):
    raise AelabError(f'{path} is not an .npz file (the zip archive np.savez writes); save it with '
                     "np.savez(path, x=..., y=...), or read a CSV table with dataset.name='csv'.")
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {k: npz[k] for k in npz.files}
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise AelabError(f'{path}: cannot read as .npz ({e}). Save it with np.savez(path, x=..., '
                     'y=...).') from None
  if 'x' not in arrays:
    raise AelabError(f'{path}: no array named "x" (found: {", ".join(arrays) or "none"}). '
                     'Save it with np.savez(path, x=features, y=labels).')
  x = arrays['x']
  if x.ndim < 2 or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
    raise AelabError(f'{path}: x must be a numeric array [N, features...]; got {x.dtype} '
                     f'{x.shape}.')
  x = x.astype(np.float32)
  bad = ~np.isfinite(x)
  if bad.any():
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    raise AelabError(f'{path}: x{list(where)} is {x[where]}; every value must be finite. '
                     'Impute or drop those rows.')
  y = arrays.get('y')
  if y is not None:
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) and not (
        np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)):
      raise AelabError(f'{path}: y must be integer labels of shape [{len(x)}]; got {y.dtype} '
                       f'{y.shape}.')
    if y.size and y.min() < 0:
      raise AelabError(f'{path}: y[{int(np.argmin(y))}] = {y.min()}; labels must be 0..K-1.')
    y = y.astype(np.int32)
  names = None
  if 'feature_names' in arrays and x.ndim == 2:
    names = tuple(str(n) for n in arrays['feature_names'])
    if len(names) != x.shape[1]:
      raise AelabError(f'{path}: {len(names)} feature_names for {x.shape[1]} columns of x.')
  elif x.ndim == 2:
    names = tuple(f'f{i}' for i in range(x.shape[1]))
  return x, y, names, {'arrays': sorted(arrays)}
