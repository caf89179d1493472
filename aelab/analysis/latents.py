"""Per-latent statistics of a sparse autoencoder (model 'sae') and the inputs each latent
responds to most: what `python -m aelab.inspect latents` writes.

    f = runs.features(run, x, 'code')              # [N, n] latents of raw rows x
    table = latents.statistics(run, f)             # one value per latent: frequency, max, ...
    chosen = latents.most_frequent(f, 10)          # the 10 latents that fire most often
    top = latents.top_inputs(f, chosen, count=16)  # per latent: (rows, activations), descending
    latents.write_grid(run, x, top, 'top.png')     # image data: those rows as images

Latents are numbered from 0 (f[:, j], row j of W_dec); a latent fires on a row when f_j > 0
(every activation of the model gives f >= 0).
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from aelab.analysis import runs
from aelab.errors import AelabError

DEFAULT_EXAMPLES = 16  # top-activating rows per latent


class Top(NamedTuple):
  """The rows that activate one latent most: 0-based row indices and f_j there, descending."""
  latent: int
  rows: np.ndarray
  values: np.ndarray


def statistics(run: runs.Run, f: np.ndarray) -> dict[str, np.ndarray]:
  """One entry per latent: 'latent', 'count' (rows where f_j > 0), 'frequency' (count / N),
  'mean_active' (mean f_j over those rows; 0 where none), 'max', 'decoder_norm' (the norm of
  row j of the decoder the forward pass uses); from the checkpoint's stats, where it holds
  them, 'steps_since_fired' (training steps since latent j last fired) and 'dead' (those at
  least model.dead_steps)."""
  f = _check_codes(run, f)
  fired = f > 0
  count = fired.sum(axis=0)
  total = np.where(fired, f, 0).astype(np.float64).sum(axis=0)
  out = {'latent': np.arange(f.shape[1]), 'count': count,
         'frequency': count / len(f),
         'mean_active': np.where(count > 0, total / np.maximum(count, 1), 0.0),
         'max': f.max(axis=0),
         'decoder_norm': np.linalg.norm(run.export().arrays['W_dec'].astype(np.float64), axis=1)}
  since = run.model_stats.get('since_fired')
  if since is not None:
    since = np.asarray(since).reshape(-1)
    out['steps_since_fired'] = since
    out['dead'] = (since >= run.model.dictionary().dead_steps).astype(np.int32)
  return out


def most_frequent(f: np.ndarray, n: int) -> list[int]:
  """The n latents that fire on the most rows (ties: the lower index first)."""
  f = np.asarray(f)
  if n < 1 or n > f.shape[1]:
    raise AelabError(f'--top={n}: choose between 1 and the run\'s {f.shape[1]} latents')
  return [int(j) for j in np.argsort(-(f > 0).sum(axis=0), kind='stable')[:n]]


def check_latents(run: runs.Run, chosen: Sequence[int]) -> list[int]:
  """The chosen latent indices, each checked against the run's latents (no repeats)."""
  n = runs.require_dictionary(run, 'choosing latents').latents
  for j in chosen:
    if not 0 <= j < n:
      raise AelabError(f'--latent={j}: no such latent; the run has {n} latents, numbered '
                       f'0..{n - 1}')
  return list(dict.fromkeys(int(j) for j in chosen))


def top_inputs(f: np.ndarray, chosen: Sequence[int], count: int = DEFAULT_EXAMPLES) -> list[Top]:
  """For each chosen latent j, up to `count` rows with the largest f_j > 0, in descending order
  (ties: the lower row first); fewer where the latent fires on fewer rows."""
  if count < 1:
    raise AelabError(f'--examples={count}: give a positive number of rows per latent')
  f = np.asarray(f)
  out = []
  for j in chosen:
    order = np.argsort(-f[:, j], kind='stable')[:count]
    order = order[f[order, j] > 0]
    out.append(Top(int(j), order, f[order, j]))
  return out


def is_image(run: runs.Run) -> bool:
  """Image data: rows of shape [H, W, C]."""
  return len(run.feature_shape) == 3


def write_grid(run: runs.Run, x: np.ndarray, top: Sequence[Top],
               path: str | pathlib.Path) -> pathlib.Path:
  """A PNG, one row of images per latent (its top rows, left to right in descending order;
  blank where it fired on fewer), on the value range of x; written atomically."""
  from aelab import plots  # matplotlib only when a grid is drawn
  if not is_image(run):
    raise AelabError(f'the inputs of {run.workdir} are not images (shape {run.feature_shape})')
  x = np.asarray(x).reshape(len(x), *run.feature_shape)
  lo, hi = float(x.min()), float(x.max())
  width = max([len(t.rows) for t in top] + [1])
  grid = []
  for t in top:
    images = np.full((width, *run.feature_shape), lo, np.float32)
    images[:len(t.rows)] = x[t.rows]
    grid.append(images)
  return plots.image_rows(grid, [f'latent {t.latent}' for t in top], path,
                          value_range=(lo, max(hi, lo + 1e-6)))


def _check_codes(run: runs.Run, f: np.ndarray) -> np.ndarray:
  latents = runs.require_dictionary(run, 'per-latent statistics').latents
  f = np.asarray(f)
  if f.ndim != 2 or f.shape[1] != latents:
    raise AelabError(f'latents of shape {f.shape}; the run has {latents} latents per row')
  if not len(f):
    raise AelabError('no rows: per-latent statistics need at least one row')
  return f
