"""Writing results as CSV and NPZ, atomically: a temporary file beside the target, then a rename.

An error before the rename (bad input, a full disk) leaves no partial file behind and keeps any
previous file at that path. CSV files start with `# ` comment lines that say what the numbers
are, then one row of column names (read them back with `pandas.read_csv(path, comment='#')`, or
aelab's own `data.tabular.read_csv(path, label_column='label', comment='#')`); NPZ files hold the
same text in the string array `header`.
Floats are written with 9 significant digits, which round-trips float32 exactly.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from aelab import preprocessing
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


@contextlib.contextmanager
def atomic_file(path: str | pathlib.Path) -> Iterator[pathlib.Path]:
  """Yields a temporary path in the target's directory; renames it onto `path` on success."""
  path = pathlib.Path(path)
  if path.is_dir():
    raise AelabError(f'{path} is a directory; give a file name')
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
  os.close(fd)
  tmp = pathlib.Path(tmp)
  try:
    yield tmp
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; give it the usual mode
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


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
  with atomic_file(path) as tmp:
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
  with atomic_file(path) as tmp:
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
  with atomic_file(path) as tmp:
    with open(tmp, 'wb') as f:
      np.savez(f, **items)
  return pathlib.Path(path)


def _quote(text: str) -> str:
  if any(c in text for c in ',"\n'):
    return '"' + text.replace('"', '""') + '"'
  return text


# --- weights --------------------------------------------------------------------------------

def weight_arrays(run: runs.Run) -> dict[str, np.ndarray]:
  """'encoder_1/kernel' [in, out], 'encoder_1/bias' [out], ..., plus the preprocessing
  statistics by name ('mean', 'mul', ...), plus 'layers' and 'activations' in forward order.
  A sparse autoencoder: runs.sae_arrays (W_enc, b_enc, W_dec as used, b_dec, thresholds), the
  statistics, 'activation' and 'k'."""
  if runs.is_sae(run):
    return _sae_weight_arrays(run)
  net = runs.layers(run)
  out: dict[str, np.ndarray] = {}
  for layer in net:
    out[f'{layer.name}/kernel'] = layer.kernel
    out[f'{layer.name}/bias'] = layer.bias
  for key in preprocessing.STAT_KEYS[run.mode]:
    out[key] = np.asarray(run.stats[key])
  out['layers'] = np.asarray([layer.name for layer in net])
  out['activations'] = np.asarray([layer.activation for layer in net])
  out['preprocessing'] = np.asarray(run.mode)
  return out


def _sae_weight_arrays(run: runs.Run) -> dict[str, np.ndarray]:
  cfg = run.config.model
  out = runs.sae_arrays(run)
  for key in preprocessing.STAT_KEYS[run.mode]:
    out[key] = np.asarray(run.stats[key])
  out.update(activation=np.asarray(cfg.activation), k=np.asarray(cfg.k),
             normalize_decoder=np.asarray(bool(cfg.normalize_decoder)),
             preprocessing=np.asarray(run.mode))
  return out


def weights_header(run: runs.Run) -> list[str]:
  if runs.is_sae(run):
    cfg = run.config.model
    return [f'aelab weights of {run.workdir} at step {run.step}: a sparse autoencoder '
            f'({cfg.activation}, {cfg.latents} latents)',
            f'orientation: W_enc [{run.num_features}, {cfg.latents}] = [input, latent], b_enc '
            f'[{cfg.latents}], W_dec [{cfg.latents}, {run.num_features}] (row j: latent j\'s '
            f'direction), b_dec [{run.num_features}]; rows are row vectors',
            'the latents by hand: z = the preprocessed row (below), pre = (z - b_dec) @ W_enc + '
            'b_enc, then the activation; the reconstruction z_hat = f @ W_dec + b_dec',
            *runs.formula(run)]
  return [f'aelab weights of {run.workdir} at step {run.step}',
          'orientation: every kernel is [in, out] and every layer computes '
          'out = activation(h @ kernel + bias), h a row vector [.., in]; biases are vectors [out]',
          *runs.formula(run)]


def write_weights(run: runs.Run, out: str | pathlib.Path) -> pathlib.Path:
  """All kernels, biases and preprocessing statistics: one .npz, or a directory of CSV files."""
  out = pathlib.Path(out)
  arrays = weight_arrays(run)
  header = weights_header(run)
  if out.suffix.lower() == '.npz':
    return write_npz(out, header, arrays)
  if out.suffix.lower() == '.csv':
    raise AelabError(f'--out={str(out)!r}: weights are many arrays; give a .npz file or a '
                     'directory (one CSV per kernel and bias, plus preprocessing.csv)')
  if out.exists() and (not out.is_dir() or (any(out.iterdir())
                                            and not (out / WEIGHTS_MANIFEST).is_file())):
    raise AelabError(f'--out={str(out)!r} exists and is not an aelab weights directory; '
                     'choose a new directory')
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f'.{out.name}.', suffix='.tmp', dir=out.parent))
  try:
    _weights_dir(run, tmp, arrays, header)
    os.chmod(tmp, 0o777 & ~_umask())
    if out.exists():
      old = out.with_name(f'.{out.name}.old')
      shutil.rmtree(old, ignore_errors=True)
      os.replace(out, old)
      os.replace(tmp, out)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.replace(tmp, out)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return out


SAE_ARRAYS = {  # the CSV files of a sparse autoencoder's weights directory: what each holds
    'W_enc': 'W_enc, shape [{d}, {n}] = [input, latent]: column j holds latent j\'s encoder',
    'b_enc': 'b_enc, shape [{n}]: one value per latent, one per line',
    'W_dec': 'W_dec, shape [{n}, {d}] = [latent, input]: row j is latent j\'s direction, as the '
             'forward pass uses it{unit}',
    'b_dec': 'b_dec, shape [{d}]: one value per input feature, one per line',
    'threshold': 'threshold = exp(log_threshold), shape [{n}]: JumpReLU keeps pre where '
                 'pre > threshold, one value per latent, one per line',
    'batchtopk_threshold': 'batchtopk_threshold, one value: BatchTopK keeps relu(pre) where '
                           'pre > it (the inference threshold set in training)'}


def _weights_dir(run: runs.Run, d: pathlib.Path, arrays: dict, header: list[str]) -> None:
  (d / WEIGHTS_MANIFEST).write_text(''.join(f'{line}\n' for line in header))
  names = run.feature_names or tuple(f'f{i}' for i in range(run.num_features))
  first = 'encoder_1 kernel'
  if runs.is_sae(run):
    first = 'W_enc'
    unit = ' (the parameter\'s rows divided by their norms)' if run.config.model.normalize_decoder \
        else ''
    for key, text in SAE_ARRAYS.items():
      if key in arrays:
        write_matrix_csv(d / f'{key}.csv', [
            text.format(d=run.num_features, n=run.config.model.latents, unit=unit),
            *header[2:]], np.atleast_1d(arrays[key]))
  for layer in ([] if runs.is_sae(run) else runs.layers(run)):
    n_in, n_out = layer.kernel.shape
    write_matrix_csv(d / f'{layer.name}.kernel.csv', [
        f'{layer.name} kernel, shape [{n_in}, {n_out}] = [in, out]: row i holds the weights from '
        f'input unit i, column j those into output unit j',
        f'{layer.name}: out = {layer.activation}(h @ kernel + bias)'], layer.kernel)
    write_matrix_csv(d / f'{layer.name}.bias.csv', [
        f'{layer.name} bias, shape [{n_out}]: one value per output unit, one per line'], layer.bias)
  keys = preprocessing.STAT_KEYS[run.mode]
  write_csv(d / 'preprocessing.csv',
            [f'preprocessing {run.mode!r}: {preprocessing.describe(run.mode)}',
             f'one row per input feature, in the order of the {first} rows'],
            ['feature', *keys],
            [list(names), *[np.asarray(arrays[k], np.float32).reshape(-1) for k in keys]])
