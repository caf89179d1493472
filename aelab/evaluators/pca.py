"""Evaluator 'pca': the linear baseline at the same code size, beside the autoencoder.

PCA with `components` principal directions is fitted on the training split in the run's
preprocessed space (the space the network sees), then reconstructs `split`: z_hat = mean +
(z - mean) V V^T, inverted to input units like the network's reconstruction. Metrics (logged as
<split>/<name>): pca_mse (per element, input units), pca_r2 (1 - SSE / SST, SST around the
split's own mean, as the reconstruction evaluator computes r2), pca_bce (data in [0, 1] only;
reconstructions clipped to [1e-7, 1 - 1e-7]) and pca_components. The fit does not depend on the
network, so it is computed once per run (float64, on the host).
"""

from __future__ import annotations

import numpy as np

from aelab.config import checks
from aelab.evaluators.context import Context, split_of

OPTIONS = dict(split='test', every=0, components=32)  # the linear baseline at a code size
_EPS = 1e-7


class Evaluator:
  def __init__(self, ctx: Context, split: str, components: int):
    d = int(np.prod(ctx.dataset.feature_shape))
    checks.integer(components, 'the pca evaluator\'s components', low=1, high=d,
                   hint=' (at most the number of features)')
    self.train, self.data = ctx.dataset.train.x, split_of(ctx.dataset, split).x
    self.k, self.unit_interval = components, ctx.unit_interval
    self._result = None

  def _fit(self, prep) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(prep.apply(self.train)[0], np.float64).reshape(len(self.train), -1)
    mean = z.mean(axis=0)
    _, _, vt = np.linalg.svd(z - mean, full_matrices=False)
    return mean, vt[:self.k]

  def __call__(self, state, prep) -> dict[str, float]:
    del state  # the baseline does not depend on the network
    if self._result is None and len(self.data):
      mean, v = self._fit(prep)
      x = self.data
      z, ctx = prep.apply(x)
      flat = np.asarray(z, np.float64).reshape(len(x), -1)
      z_hat = (mean + (flat - mean) @ v.T @ v).reshape(np.shape(z)).astype(np.float32)
      x_hat = np.asarray(prep.invert(z_hat, ctx), np.float64)
      x64 = np.asarray(x, np.float64)
      sse = np.sum((x_hat - x64) ** 2)
      out = {'pca_mse': sse / x.size,
             'pca_r2': 1.0 - sse / max(np.sum((x64 - x64.mean(axis=0)) ** 2), 1e-30),
             'pca_components': self.k}
      if self.unit_interval:
        p = np.clip(x_hat, _EPS, 1 - _EPS)
        out['pca_bce'] = float(-np.mean(x64 * np.log(p) + (1 - x64) * np.log1p(-p)))
      self._result = {k: float(v) if k != 'pca_components' else v for k, v in out.items()}
    return dict(self._result or {})
