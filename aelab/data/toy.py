"""`toy_features`: activations with known ground truth, for sparse dictionaries (models/sae.py).

n features are random unit directions f_i in R^d (`true_features`). Each example is
x = sum_i a_i f_i (+ Gaussian noise): feature i is active with probability `probability`,
independently or, with `correlation` rho > 0, through a one-factor Gaussian copula
(u_i = sqrt(rho) g + sqrt(1 - rho) e_i, active where Phi(u_i) < p: features tend to fire
together); an active feature's magnitude is `magnitude` x U(0.5, 1.5). Deterministic in the seed
(the directions from one stream, the coefficients from another); splits: test, then val, as the
other generated sets; each split holds its rows' true codes a (Split.truth_codes). A dictionary
recovers feature i when one of its decoder directions has cosine similarity > 0.9 with f_i
(aelab/evaluators/sae.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from aelab.data import options
from aelab.data.dataset import Dataset, Split, split_off
from aelab.errors import AelabError

SOURCES: dict[str, dict[str, Any]] = {
    'toy_features': {'num_examples': 60000, 'num_features': 512, 'dims': 128,
                     'probability': 0.01, 'magnitude': 1.0, 'correlation': 0.0, 'noise': 0.0,
                     'val_fraction': 0.05, 'test_fraction': 0.05},
}


def true_features(num_features: int, dims: int, seed: int) -> np.ndarray:
  """The ground-truth directions [num_features, dims], unit rows."""
  f = np.random.default_rng([int(seed), 1]).normal(size=(num_features, dims))
  return (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)


def _coefficients(rng, n: int, k: int, p: float, rho: float, magnitude: float) -> np.ndarray:
  if rho > 0:
    from statistics import NormalDist
    u = math.sqrt(rho) * rng.normal(size=(n, 1)) + math.sqrt(1 - rho) * rng.normal(size=(n, k))
    active = u < NormalDist().inv_cdf(p)
  else:
    active = rng.random((n, k)) < p
  return (active * rng.uniform(0.5, 1.5, size=(n, k)) * magnitude).astype(np.float32)


def load(cfg: Mapping[str, Any], seed: int) -> Dataset:
  name, fields = options.resolve(cfg, SOURCES, 'toy.load')
  n = options.count(fields, 'num_examples', minimum=1)
  k = options.count(fields, 'num_features', minimum=1)
  d = options.count(fields, 'dims', minimum=1)
  p = options.number(fields, 'probability', positive=True)
  rho, noise = options.number(fields, 'correlation'), options.number(fields, 'noise')
  if not 0 < p < 1 or not 0 <= rho < 1 or noise < 0:
    raise AelabError(f'dataset.probability must be in (0, 1), dataset.correlation in [0, 1) and '
                     f'dataset.noise >= 0; got {p}, {rho}, {noise}')
  val_fraction, test_fraction = options.split_fractions(fields)
  rng = np.random.default_rng([int(seed), 2])
  a = _coefficients(rng, n, k, p, rho, options.number(fields, 'magnitude', positive=True))
  truth = true_features(k, d, seed)
  x = a @ truth
  if noise:
    x = x + rng.normal(0.0, noise, size=x.shape).astype(np.float32)
  both = np.concatenate([x.astype(np.float32), a], axis=1)  # rows and their true codes, split alike
  (rest, _), (test, _) = split_off(both, None, test_fraction, seed)
  (train, _), (val, _) = split_off(rest, None, val_fraction, seed)
  part = lambda rows: Split(rows[:, :d].copy(), None, truth_codes=rows[:, d:].copy())  # noqa: E731
  return Dataset(
      name=name, train=part(train), val=part(val), test=part(test),
      feature_shape=(d,), value_range=None, feature_names=None, num_classes=None, truth=truth,
      source={'name': name, 'generator': 'numpy.random.default_rng([seed, 1 | 2])',
              'seed': int(seed), 'mean_active': float((a > 0).sum(1).mean()), **dict(fields)})
