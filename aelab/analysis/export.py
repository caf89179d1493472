"""Writing results as CSV and NPZ, atomically (aelab/files.py), and a run's weights export.

CSV files start with `# ` comment lines that say what the numbers
are, then one row of column names (read them back with `pandas.read_csv(path, comment='#')`, or
aelab's own `data.tabular.read_csv(path, label_column='label', comment='#')`); NPZ files hold the
same text in the string array `header`.
Floats are written with 9 significant digits, which round-trips float32 exactly.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from aelab import files, preprocessing
from aelab.analysis import runs
from aelab.errors import AelabError

FORMATS = ('csv', 'npz')
WEIGHTS_MANIFEST = 'model.txt'  # marks a directory as an aelab weights export


def format_of(path: str | pathlib.Path) -> str:
  """'csv' or 'npz' from the file name; anything else is an error."""
  suffix = pathlib.Path(path).suffix.lower().lstrip('.')
  if suffix not in FORMATS:
    raise AelabError(f'--out={str(path)!r}: name the output file .csv or .npz')
  return suffix


def write_csv(path: str | pathlib.Path, header: Sequence[str], columns: Sequence[str],
              values: Sequence[np.ndarray | Sequence[Any]]) -> pathlib.Path:
  """One CSV: '# ' header lines, a row of column names, then the rows.

  `values` holds one array per group of columns: a numeric [N] or [N, k] array, or a list of N
  strings; together they have len(columns) columns.
  """
  blocks = []
  for v in values:
    if isinstance(v, np.ndarray) and v.dtype.kind in 'fiub':
      a = v.reshape(len(v), -1)
      blocks.append(np.char.mod('%.9g' if a.dtype.kind == 'f' else '%d', a))
    else:
      blocks.append(np.asarray([[_quote(str(c))] for c in v], dtype=object).reshape(len(v), 1))
  n = len(blocks[0]) if blocks else 0
  if any(len(b) != n for b in blocks) or sum(b.shape[1] for b in blocks) != len(columns):
    raise AelabError(f'internal: {len(columns)} CSV columns but values of shapes '
                     f'{[b.shape for b in blocks]}')
  with files.atomic(path) as tmp:
    with open(tmp, 'w', encoding='utf-8', newline='') as f:
      for line in header:
        f.write(f'# {line}\n')
      f.write(','.join(_quote(c) for c in columns) + '\n')
      for i in range(n):
        f.write(','.join(str(c) for b in blocks for c in b[i]) + '\n')
  return pathlib.Path(path)


def write_matrix_csv(path: str | pathlib.Path, header: Sequence[str],
                     matrix: np.ndarray) -> pathlib.Path:
  """A bare numeric matrix (or vector, one value per line) after '# ' header lines."""
  a = np.asarray(matrix)
  a = a.reshape(-1, 1) if a.ndim == 1 else a.reshape(a.shape[0], -1)
  with files.atomic(path) as tmp:
    with open(tmp, 'w', encoding='utf-8', newline='') as f:
      for line in header:
        f.write(f'# {line}\n')
      for row in a:
        f.write(','.join('%.9g' % v for v in row) + '\n')
  return pathlib.Path(path)


def write_npz(path: str | pathlib.Path, header: Sequence[str],
              arrays: Mapping[str, Any]) -> pathlib.Path:
  """An .npz of `arrays` plus `header` (the same text a CSV would carry)."""
  items = {k: np.asarray(v) for k, v in arrays.items()}
  items['header'] = np.asarray('\n'.join(header))
  with files.atomic(path) as tmp:
    with open(tmp, 'wb') as f:
      np.savez(f, **items)
  return pathlib.Path(path)


def _quote(text: str) -> str:
  if any(c in text for c in ',"\n'):
    return '"' + text.replace('"', '""') + '"'
  return text


# --- weights ---------------------------------------------------------------------------------

def weight_arrays(run: runs.Run) -> dict[str, np.ndarray]:
  """Every array the model exports by name (a dense layer's kernel [in, out] and bias, ...), the
  preprocessing statistics by name ('mean', 'mul', ...), the model's extras (a dense model's
  'layers' and 'activations' in forward order) and 'preprocessing' (the mode)."""
  out = run.export()
  arrays = dict(out.arrays)
  for key in preprocessing.STAT_KEYS[run.mode]:
    arrays[key] = np.asarray(run.stats[key])
  return {**arrays, **out.extras, 'preprocessing': np.asarray(run.mode)}


def weights_header(run: runs.Run) -> list[str]:
  return [f'aelab weights of {run.workdir} at step {run.step}: model {run.config.model.name!r}',
          f'orientation: {run.export().orientation}', *runs.formula(run)]


def write_weights(run: runs.Run, out: str | pathlib.Path) -> pathlib.Path:
  """Every array and the preprocessing statistics: one .npz, or a directory of CSV files."""
  out = pathlib.Path(out)
  if out.suffix.lower() == '.npz':
    return write_npz(out, weights_header(run), weight_arrays(run))
  if out.suffix.lower() == '.csv':
    raise AelabError(f'--out={str(out)!r}: weights are many arrays; give a .npz file or a '
                     'directory (one CSV per array, plus preprocessing.csv)')
  if out.exists() and (not out.is_dir() or (any(out.iterdir())
                                            and not (out / WEIGHTS_MANIFEST).is_file())):
    raise AelabError(f'--out={str(out)!r} exists and is not an aelab weights directory; '
                     'choose a new directory')
  with files.atomic_directory(out) as tmp:
    _weights_dir(run, tmp)
  return out



def _weights_dir(run: runs.Run, d: pathlib.Path) -> None:
  """model.txt (the header), <array>.csv per array ('/' in a name as '.'), preprocessing.csv."""
  header, exported = weights_header(run), run.export()
  (d / WEIGHTS_MANIFEST).write_text(''.join(f'{line}\n' for line in header))
  for name, array in exported.arrays.items():
    write_matrix_csv(d / f'{name.replace("/", ".")}.csv', list(exported.about.get(name, (name,))),
                     np.atleast_1d(array))
  names = run.feature_names or tuple(f'f{i}' for i in range(run.num_features))
  keys = preprocessing.STAT_KEYS[run.mode]
  write_csv(d / 'preprocessing.csv',
            [f'preprocessing {run.mode!r}: {preprocessing.describe(run.mode)}',
             'one row per input feature, in the order of the flattened input row (the rows of a '
             'first dense kernel)'],
            ['feature', *keys],
            [list(names), *[np.asarray(run.stats[k], np.float32).reshape(-1) for k in keys]])
