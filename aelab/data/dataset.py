"""The arrays every data source returns: `Split`, `Dataset` (with its ground truth, where known:
`Factors`), and deterministic shuffling."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from aelab.config import checks
from aelab.errors import AelabError


@dataclasses.dataclass(frozen=True, eq=False)
class Split:
  """One split: features `x` (float32, [N, *feature_shape]) and labels `y` (int32 [N] or None)."""
  x: np.ndarray
  y: np.ndarray | None
  # Where the rows were generated from known features (Dataset.truth): each row's true feature
  # activations, float32 [N, features] (0 where a feature is silent).
  truth_codes: np.ndarray | None = None

  def __post_init__(self):
    if not isinstance(self.x, np.ndarray) or self.x.dtype != np.float32 or self.x.ndim < 2:
      raise AelabError(
          f'Split.x must be a float32 array of shape [N, *feature_shape]; got '
          f'{getattr(self.x, "dtype", type(self.x).__name__)} {getattr(self.x, "shape", "")}. '
          'Convert it with np.asarray(x, np.float32).')
    if self.y is not None:
      if not isinstance(self.y, np.ndarray) or self.y.dtype != np.int32 or self.y.ndim != 1:
        raise AelabError(
            f'Split.y must be None or an int32 array of shape [N]; got '
            f'{getattr(self.y, "dtype", type(self.y).__name__)} {getattr(self.y, "shape", "")}.')
      if len(self.y) != len(self.x):
        raise AelabError(
            f'Split has {len(self.x)} rows of x but {len(self.y)} labels; they must match.')

  def __len__(self) -> int:
    return int(self.x.shape[0])


@dataclasses.dataclass(frozen=True, eq=False)
class Stream:
  """Training rows generated on the devices inside the train step, never stored:
  `sample(arrays, key, batch_size)` -> x float32 [batch_size, *feature_shape], a pure jax
  function of the generator's `arrays` (numpy, placed on the devices once) and a step's key."""
  arrays: dict[str, np.ndarray]
  sample: Callable


@dataclasses.dataclass(frozen=True, eq=False)
class Shards:
  """A training set too large to hold: the first `rows[i]` rows of each .npy file `paths[i]`
  (float32 [n_i, *feature_shape], in name order), concatenated. It is read from disk in windows
  of at least `shuffle_buffer` rows (aelab/trainer/shard_batches.py); the dataset's `train`
  split then holds only the first shard's rows, a preview for fitting the preprocessing and
  initialising from data."""
  paths: tuple[str, ...]
  rows: tuple[int, ...]
  shuffle_buffer: int
  labels: np.ndarray | None = None   # int32 [sum(rows)]: every row's label, held (they are small)

  def __post_init__(self):
    if len(self.paths) != len(self.rows) or not self.paths or min(self.rows) <= 0:
      raise AelabError(f'Shards needs one positive row count per file; got {len(self.paths)} '
                       f'files and rows {self.rows}')
    if self.labels is not None and self.labels.shape != (sum(self.rows),):
      raise AelabError(f'Shards has {sum(self.rows)} rows but labels of shape {self.labels.shape}')

  def __len__(self) -> int:
    return int(sum(self.rows))

  def read(self, start: int, n: int) -> np.ndarray:
    """Rows start .. start + n - 1 of the concatenation, through the shards' memory maps."""
    ends = np.cumsum(self.rows)
    out = []
    while n > 0:
      i = int(np.searchsorted(ends, start, side='right'))
      at = start - int(ends[i] - self.rows[i])
      take = min(n, self.rows[i] - at)
      out.append(np.load(self.paths[i], mmap_mode='r')[at:at + take])
      start, n = start + take, n - take
    return np.concatenate(out)


@dataclasses.dataclass(frozen=True, eq=False)
class Factors:
  """A dataset's known factors of variation, all discrete: factor i takes the value indices
  0 .. counts[i] - 1 (uniformly, independently, as the data were generated), and
  `observe(factors int32 [n, k]) -> float32 [n, *feature_shape]` renders the observations of
  given factor indices in input units (the disentanglement metrics' sampling,
  aelab/evaluators/disentanglement.py)."""
  names: tuple[str, ...]
  counts: tuple[int, ...]
  observe: Callable

  def __post_init__(self):
    if not self.names or len(self.names) != len(self.counts) or min(self.counts) < 1:
      raise AelabError(f'Factors needs one name and one positive value count per factor; got '
                       f'names {tuple(self.names)} and counts {tuple(self.counts)}')


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """Train/val/test splits plus the metadata the rest of aelab needs."""
  name: str
  train: Split
  val: Split
  test: Split
  feature_shape: tuple[int, ...]
  value_range: tuple[float, float] | None
  feature_names: tuple[str, ...] | None
  num_classes: int | None
  source: dict[str, Any]
  # Ground truth where the data were generated from known features: their directions
  # [features, *feature_shape] (a sparse dictionary's evaluator scores its decoder against them).
  truth: np.ndarray | None = None
  # A streamed training set (the `train` split then holds a sample of it, for fitting the
  # preprocessing and initialising from data).
  stream: Stream | None = None
  # A training set read from .npy shards on disk (the `train` split then holds the first shard).
  shards: Shards | None = None
  # Known factors of variation that render observations (sprites: shape, scale, orientation,
  # x, y), for the disentanglement metrics.
  factors: Factors | None = None

  def __post_init__(self):
    if not math.prod(self.feature_shape):
      raise AelabError(f'dataset {self.name!r} has no features (each row has shape '
                       f'{tuple(self.feature_shape)}); give rows of at least one value')
    for split_name in ('train', 'val', 'test'):
      split = getattr(self, split_name)
      if tuple(split.x.shape[1:]) != tuple(self.feature_shape):
        raise AelabError(
            f'Dataset {self.name!r}: {split_name} rows have shape {split.x.shape[1:]}, '
            f'expected feature_shape {self.feature_shape}.')

  @property
  def is_image(self) -> bool:
    """True for [H, W, C] images."""
    return len(self.feature_shape) == 3


Pair = tuple[np.ndarray, np.ndarray | None]


def split_off(x: np.ndarray, y: np.ndarray | None, fraction: float,
              seed: int) -> tuple[Pair, Pair]:
  """Splits rows into (a, b): a random `round(fraction * N)` rows go to b, the rest to a.

  Deterministic for a given (N, fraction, seed); rows keep their original order inside
  each part (the shuffle only decides membership).
  """
  if not 0.0 <= fraction < 1.0:
    raise AelabError(f'split fraction must be in [0, 1); got {fraction}.')
  n = len(x)
  n_b = int(math.floor(fraction * n + 0.5))
  perm = np.random.default_rng(_seed(seed)).permutation(n)
  idx_b = np.sort(perm[:n_b])
  idx_a = np.sort(perm[n_b:])
  take = lambda idx: (x[idx], None if y is None else y[idx])
  return take(idx_a), take(idx_b)


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
  """The order of the `n` training rows in `epoch`; deterministic per (seed, epoch)."""
  return np.random.default_rng([_seed(seed), _seed(epoch)]).permutation(n)


def _seed(value: int) -> int:
  return checks.integer(value, 'a seed or epoch', low=0)
