"""Rows to run a trained model on: a CSV or NPZ file, or a split of the run's own dataset.

A CSV is read with the `aelab.data.tabular` rules (so a missing value, a non-number or a short
row is an error naming the file, row and column), using the run's label column. When the run
was trained on a CSV with a header, the input's columns are matched to the training columns by
name (extra columns are ignored, order does not matter; a missing one is an error). Otherwise
the number of feature columns must equal the model's input width.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from aelab.analysis import runs
from aelab.data import download, tabular
from aelab.errors import AelabError

SPLITS = ('train', 'val', 'test')


@dataclasses.dataclass(frozen=True, eq=False)
class Rows:
  """Raw rows (float32 [N, *feature_shape], input units) and what is known about them."""
  x: np.ndarray
  y: np.ndarray | None
  label_names: list[str] | None
  columns: tuple[str, ...] | None
  source: str

  def label_text(self) -> list[str] | None:
    """Each row's label as text (the class name where the labels have names)."""
    if self.y is None:
      return None
    if self.label_names:
      return [self.label_names[int(i)] for i in self.y]
    return [str(int(i)) for i in self.y]

  def positive(self, label: str) -> np.ndarray:
    """Boolean mask of rows whose label is `label` (a class name or an integer)."""
    if self.y is None:
      raise AelabError(f'{self.source} has no labels; a positive class needs a label column '
                       '(--label-column) or an npz with y')
    names = self.label_names or []
    if label in names:
      return self.y == names.index(label)
    if label.strip().lstrip('-').isdigit() and not names:
      return self.y == int(label)
    valid = ', '.join(names) if names else ', '.join(str(v) for v in np.unique(self.y))
    raise AelabError(f'positive class {label!r} is not a label of {self.source}; labels: {valid}')


def read(run: runs.Run, path: str | None = None, split: str | None = None,
         label_column: str | None = None) -> Rows:
  """Rows from exactly one of `path` (.csv / .npz) or `split` (train / val / test)."""
  if (path is None) == (split is None):
    raise AelabError('give the rows to use: either an input file (--input=rows.csv or .npz) or '
                     f'a split of the run\'s dataset (--split={"|".join(SPLITS)}), not both')
  return from_split(run, split) if split is not None else from_file(run, path, label_column)


def from_split(run: runs.Run, name: str) -> Rows:
  """Split `name` of the dataset the run was trained on, as its config and seed define it."""
  if name not in SPLITS:
    raise AelabError(f'unknown split {name!r}; valid splits: {", ".join(SPLITS)}')
  ds = run.dataset
  split = getattr(ds, name)
  x = runs.check_rows(run, split.x, f'the {name} split')
  return Rows(x=x, y=split.y, label_names=ds.source.get('label_names'),
              columns=ds.feature_names, source=f'the {name} split of dataset {ds.name!r}')


def from_file(run: runs.Run, path: str | pathlib.Path, label_column: str | None = None) -> Rows:
  """Rows of a .csv or .npz file, checked against the run's input features."""
  path = pathlib.Path(path).expanduser()
  if not path.is_file():
    raise AelabError(f'input {str(path)!r} is not a file')
  suffix = path.suffix.lower()
  if suffix == '.npz':
    x, y, names, _ = tabular.read_npz(path)
    return Rows(x=runs.check_rows(run, x, str(path)), y=y, label_names=None, columns=names,
                source=str(path))
  if suffix not in ('.csv', '.txt', '.tsv'):
    raise AelabError(f'input {str(path)!r}: unknown file type {path.suffix!r}; give a .csv or .npz')
  return _from_csv(run, path, label_column)


def _csv_options(run: runs.Run) -> dict[str, str]:
  ds = run.config.dataset
  opts = {'label_column': '', 'header': 'auto', 'delimiter': ','}
  if ds.get('name') == 'csv':
    for key in opts:
      if ds.get(key) is not None:
        opts[key] = str(ds.get(key))
  if opts['delimiter'] in ('\\t', 'tab'):
    opts['delimiter'] = '\t'
  return opts


def _from_csv(run: runs.Run, path: pathlib.Path, label_column: str | None) -> Rows:
  opts = _csv_options(run)
  first = tabular.first_row(path, opts['delimiter'])
  if label_column is not None:
    opts['label_column'] = label_column
  elif opts['label_column'] and not opts['label_column'].lstrip('-').isdigit() \
      and opts['label_column'] not in first:
    opts['label_column'] = ''  # The run's label column is simply absent from this file.
  trained = run.feature_names
  columns = ''
  looks_like_header = any(c and not tabular.is_number(c) for c in first)
  if trained and looks_like_header and opts['header'] != 'no':
    missing = [c for c in trained if c not in first]
    if missing:
      shown = ', '.join(missing[:6]) + (' ...' if len(missing) > 6 else '')
      raise AelabError(
          f'{path}: the header lacks {len(missing)} of the {len(trained)} columns the model was '
          f'trained on: {shown}. Give a CSV with the training columns (extra columns are ignored).')
    if not any(',' in c for c in trained):
      columns = ','.join(trained)
  x, y, names, extra = tabular.read_csv(path, opts['label_column'], columns, opts['header'],
                                        opts['delimiter'])
  d = run.num_features
  if x.shape[1] != d:
    label = f', not counting label column {opts["label_column"]!r}' if opts['label_column'] else ''
    raise AelabError(f'{path}: {x.shape[1]} feature columns per row{label}; the model was '
                     f'trained on {d}. Check the delimiter, the label column (--label-column) '
                     'and that this is the table the model was trained on.')
  source = f'{path} (md5 {download.md5_of(path.read_bytes())})'
  return Rows(x=runs.check_rows(run, x, str(path)), y=y, label_names=extra.get('label_names'),
              columns=names, source=source)
