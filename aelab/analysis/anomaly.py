"""Anomaly scores from a trained run: per-row reconstruction error, a threshold, AUROC.

H2O's `h2o.anomaly` reports per row the mean over features of the squared reconstruction error
in its normalised space ("Reconstruction.MSE"), or with per_feature=TRUE each feature's squared
error. `errors(run, x)` computes the same in the run's preprocessed space (space='normalized',
the default; with `h2o` preprocessing that is exactly H2O's space), or in input units
(space='input', where features with large units dominate).

    err = anomaly.errors(run, x)                       # [N]
    cut = anomaly.threshold(run, quantile=0.99)        # from the training split's errors
    flagged = err > cut
    anomaly.auroc(err, y == positive_class)            # 1.0: every positive scores above all others
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aelab.analysis import inputs, runs
from aelab.config import checks
from aelab.errors import AelabError


def errors(run: runs.Run, x: Any, space: str = 'normalized', per_feature: bool = False,
           batch_size: int = runs.DEFAULT_BATCH) -> np.ndarray:
  """Squared reconstruction errors: per row, the mean over features [N]; or per feature [N, d]."""
  runs.check_space(space)
  runs.require_reconstruction(run)
  x = runs.check_rows(run, x)
  out = runs.outputs(run, x, batch_size)
  pred, target = (out['recon'], out['z']) if space == 'normalized' else (out['x_hat'], x)
  flat = lambda a: np.asarray(a, np.float64).reshape(len(x), -1)  # noqa: E731
  se = np.square(flat(pred) - flat(target))
  return se if per_feature else se.mean(axis=1)


def threshold(run: runs.Run, quantile: float = 0.99, x: Any = None, space: str = 'normalized',
              batch_size: int = runs.DEFAULT_BATCH) -> float:
  """The `quantile` of the per-row errors of x (default: the run's own training split)."""
  check_quantile(quantile)
  if x is None:
    x = inputs.from_split(run, 'train').x
  return float(np.quantile(errors(run, x, space, batch_size=batch_size), quantile))


def check_quantile(quantile: Any) -> None:
  checks.number(quantile, 'the threshold quantile', above=0.0, below=1.0, hint=', e.g. 0.99')


def auroc(scores: Any, positive: Any) -> float:
  """Area under the ROC curve: P(score of a positive > score of a negative), ties count half."""
  scores = np.asarray(scores, np.float64).ravel()
  positive = np.asarray(positive, bool).ravel()
  if scores.shape != positive.shape:
    raise AelabError(f'auroc: {scores.size} scores but {positive.size} labels')
  n_pos, n_neg = int(positive.sum()), int((~positive).sum())
  if n_pos == 0 or n_neg == 0:
    raise AelabError(f'auroc needs both positive and negative rows; got {n_pos} positive, '
                     f'{n_neg} negative')
  order = np.argsort(scores, kind='mergesort')
  ranks = np.empty(len(scores), np.float64)
  sorted_scores = scores[order]
  # Average ranks (1-based) over runs of tied scores.
  starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
  ends = np.r_[starts[1:], len(scores)]
  for s, e in zip(starts, ends):
    ranks[order[s:e]] = (s + e + 1) / 2.0
  return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
