"""Generated datasets: `lowvar` (tiny variation around a large mean) and `blobs`.

`lowvar` is the classic "my autoencoder cannot learn the identity" table: every value is
N(1.1090579, 0.0012380764), so the MSE of predicting the mean is already ~1.5e-6.
`blobs` is a labelled Gaussian mixture for quick tests. Both draw from
`np.random.default_rng(seed)`; splits: test first, then val, with `split_off(..., seed)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from aelab.data import options
from aelab.data.dataset import Dataset, Split, split_off
from aelab.errors import AelabError

SOURCES: dict[str, dict[str, Any]] = {
    'lowvar': {'num_examples': 10000, 'num_features': 84, 'mean': 1.1090579,
               'std': 0.0012380764, 'val_fraction': 0.1, 'test_fraction': 0.1},
    'blobs': {'num_examples': 2000, 'num_features': 16, 'num_classes': 4, 'center_std': 4.0,
              'cluster_std': 1.0, 'val_fraction': 0.1, 'test_fraction': 0.1},
}


def load(cfg: Mapping[str, Any], seed: int) -> Dataset:
  """Generates `lowvar` or `blobs` deterministically from `seed`."""
  name, fields = options.resolve(cfg, SOURCES, 'synthetic.load')
  n = options.count(fields, 'num_examples', minimum=1)
  d = options.count(fields, 'num_features', minimum=1)
  val_fraction, test_fraction = options.split_fractions(fields)
  rng = np.random.default_rng(seed)
  if name == 'lowvar':
    mean, std = options.number(fields, 'mean'), options.number(fields, 'std', positive=True)
    x = rng.normal(mean, std, size=(n, d)).astype(np.float32)
    y, num_classes = None, None
  else:
    k = options.count(fields, 'num_classes', minimum=1)
    centers = rng.normal(0.0, options.number(fields, 'center_std'), size=(k, d))
    y = rng.integers(0, k, size=n).astype(np.int32)
    noise = rng.normal(0.0, options.number(fields, 'cluster_std', positive=True), size=(n, d))
    x = (centers[y] + noise).astype(np.float32)
    num_classes = k
  (rest_x, rest_y), (test_x, test_y) = split_off(x, y, test_fraction, seed)
  (train_x, train_y), (val_x, val_y) = split_off(rest_x, rest_y, val_fraction, seed)
  if len(train_x) == 0:
    raise AelabError(f'dataset.num_examples={n} leaves no training rows; raise it.')
  return Dataset(
      name=name, train=Split(train_x, train_y), val=Split(val_x, val_y),
      test=Split(test_x, test_y), feature_shape=(d,), value_range=None,
      feature_names=tuple(f'f{i}' for i in range(d)), num_classes=num_classes,
      source={'name': name, 'generator': 'numpy.random.default_rng(seed)', 'seed': int(seed),
              **{k: v for k, v in fields.items()}})
