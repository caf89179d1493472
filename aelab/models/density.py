"""Densities fitted to codes: a Gaussian mixture with full (for wide codes, diagonal)
covariances, fitted by EM from a k-means++ start, in numpy (float64 inside).

It is the ex-post density estimation of Ghosh et al. 2020 (RAE: 10 components): fitted to the
training codes of a deterministic autoencoder, its draws decoded are the model's samples
(base.Model.fit_prior; aelab/evaluators/sampling.py).

    gmm = GaussianMixture.fit(codes, components=10, seed=0)   # codes [N, d]
    z = gmm.sample(0, 64)            # float32 [64, d]; an int seed or a numpy Generator
    log_p = gmm.log_density(codes)   # [N], nats

Covariances are full up to FULL_MAX_DIM code units and diagonal above (`covariance`). Each
covariance gets a ridge of `ridge` times the codes' mean variance on its diagonal (a dead
unit, constant over the codes, keeps it positive definite), and fewer components are fitted
when there are fewer than d + 1 codes per component (DIAG_MIN_CODES for diagonal ones).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from scipy import special

from aelab.config import checks
from aelab.errors import AelabError

LOG_2PI = math.log(2 * math.pi)
KMEANS_ITERATIONS = 10   # Lloyd steps after the k-means++ seeding, before EM
FULL_MAX_DIM = 128       # covariance 'auto': full up to this code width, diagonal above
COVARIANCES = ('auto', 'full', 'diag')
DIAG_MIN_CODES = 10      # codes per component of a diagonal mixture, at least (full: d + 1)


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianMixture:
  weights: np.ndarray       # [K], summing to 1
  means: np.ndarray         # [K, d]
  covariances: np.ndarray   # [K, d, d] ('full'), or the variances [K, d] ('diag')
  log_likelihood: float     # mean log density of the fitted codes at the end of EM
  iterations: int           # EM iterations run
  converged: bool           # the mean log-likelihood changed by less than tol
  examples: int = 0         # how many codes it was fitted to
  covariance: str = 'full'  # 'full' or 'diag'

  @property
  def components(self) -> int:
    return len(self.weights)

  @property
  def dim(self) -> int:
    return self.means.shape[1]

  def describe(self) -> str:
    """One phrase for figure titles and summaries."""
    k = self.components
    return (f'Gaussian mixture ({k} component{"s" if k > 1 else ""}, {self.covariance} '
            f'covariance) of {self.examples} training codes')

  @functools.cached_property
  def _cholesky(self) -> np.ndarray:
    return _cholesky_all(self.covariances)

  @classmethod
  def fit(cls, codes, components: int = 10, seed: int = 0, iterations: int = 100,
          tol: float = 1e-3, ridge: float = 1e-6, covariance: str = 'auto') -> GaussianMixture:
    """EM from a k-means++ start on codes [N, d]; stops when the mean log-likelihood per code
    changes by less than `tol` nats or after `iterations` iterations. `covariance` 'auto' is
    'full' up to FULL_MAX_DIM units and 'diag' above (a full one costs d^2 per code and
    component: an overcomplete code of thousands of units would not fit in memory)."""
    x = _check_codes(codes)
    covariance = checks.choice(covariance, COVARIANCES, 'Gaussian mixture covariance')
    if covariance == 'auto':
      covariance = 'full' if x.shape[1] <= FULL_MAX_DIM else 'diag'
    components = checks.integer(components, 'the Gaussian mixture\'s components', low=1)
    iterations = checks.integer(iterations, 'the Gaussian mixture\'s iterations', low=1)
    per = x.shape[1] + 1 if covariance == 'full' else DIAG_MIN_CODES
    k = min(components, max(1, len(x) // per))
    reg = ridge * max(float(np.var(x, axis=0).mean()), 1e-12)
    rng = np.random.default_rng(seed)
    resp = np.eye(k)[_kmeans(x, k, rng)]
    weights, means, covs = _m_step(x, resp, reg, covariance == 'diag')
    previous, done, it = -np.inf, False, 0
    for it in range(1, iterations + 1):
      log_p = _log_joint(x, weights, means, _cholesky_all(covs))
      norm = special.logsumexp(log_p, axis=1)
      current = float(norm.mean())
      if abs(current - previous) < tol:
        done = True
        break
      previous = current
      weights, means, covs = _m_step(x, np.exp(log_p - norm[:, None]), reg, covariance == 'diag')
    return cls(weights=weights, means=means, covariances=covs, log_likelihood=current,
               iterations=it, converged=done, examples=len(x), covariance=covariance)

  def sample(self, rng, n: int) -> np.ndarray:
    """n draws, float32 [n, d], in random order; `rng` a numpy Generator or an int seed."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    counts = rng.multinomial(int(n), self.weights / self.weights.sum())
    scale = self._cholesky
    parts = [self.means[j] + (rng.standard_normal((c, self.dim)) * scale[j] if scale.ndim == 2
                              else rng.standard_normal((c, self.dim)) @ scale[j].T)
             for j, c in enumerate(counts)]
    out = np.concatenate(parts, axis=0) if parts else np.zeros((0, self.dim))
    return out[rng.permutation(len(out))].astype(np.float32)

  def log_density(self, codes) -> np.ndarray:
    """log p(code) [N] in nats (float64)."""
    x = _check_codes(codes, self.dim)
    return special.logsumexp(_log_joint(x, self.weights, self.means, self._cholesky), axis=1)


def _check_codes(codes, dim: int | None = None) -> np.ndarray:
  x = np.asarray(codes, np.float64)
  if x.ndim != 2 or not len(x) or (dim is not None and x.shape[1] != dim):
    want = f'[N, {dim}]' if dim is not None else '[N, d] with N >= 1'
    raise AelabError(f'a Gaussian mixture takes codes {want}; got shape {x.shape}')
  if not np.isfinite(x).all():
    row = int(np.argwhere(~np.isfinite(x))[0][0])
    raise AelabError(f'a Gaussian mixture takes finite codes; code {row} is not')
  return x


def _sq_distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
  """Squared distances [N, K] (clipped at 0 against rounding)."""
  d = (x * x).sum(1)[:, None] - 2 * x @ centres.T + (centres * centres).sum(1)[None, :]
  return np.maximum(d, 0.0)


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
  """Hard assignments [N] of k-means++ seeding followed by a few Lloyd steps."""
  centres = [x[rng.integers(len(x))]]
  closest = _sq_distances(x, centres[0][None])[:, 0]
  for _ in range(1, k):
    total = closest.sum()
    pick = rng.choice(len(x), p=closest / total) if total > 0 else rng.integers(len(x))
    centres.append(x[pick])
    closest = np.minimum(closest, _sq_distances(x, x[pick][None])[:, 0])
  centres = np.stack(centres)
  for _ in range(KMEANS_ITERATIONS):
    labels = np.argmin(_sq_distances(x, centres), axis=1)
    for j in range(k):
      if np.any(labels == j):
        centres[j] = x[labels == j].mean(0)
  return np.argmin(_sq_distances(x, centres), axis=1)


def _m_step(x: np.ndarray, resp: np.ndarray, reg: float, diag: bool):
  """Weights [K], means [K, d] and covariances [K, d, d] (or variances [K, d] when `diag`),
  ridge `reg` on the diagonal, from responsibilities [N, K]."""
  nk = resp.sum(0) + 10 * np.finfo(np.float64).eps
  means = resp.T @ x / nk[:, None]
  if diag:
    return nk / nk.sum(), means, np.maximum(resp.T @ (x * x) / nk[:, None] - means ** 2, 0) + reg
  covs = np.empty((len(nk), x.shape[1], x.shape[1]))
  for j in range(len(nk)):
    scaled = (x - means[j]) * np.sqrt(resp[:, j])[:, None]
    covs[j] = scaled.T @ scaled / nk[j]
    covs[j].flat[::x.shape[1] + 1] += reg
  return nk / nk.sum(), means, covs


def _cholesky_all(covs: np.ndarray) -> np.ndarray:
  """Lower Cholesky factors [K, d, d] of full covariances; standard deviations [K, d] of
  diagonal ones."""
  if covs.ndim == 2:
    return np.sqrt(covs)
  return np.linalg.cholesky(covs)   # batched over the components (one call, not K)


def _log_joint(x: np.ndarray, weights: np.ndarray, means: np.ndarray,
               chol: np.ndarray) -> np.ndarray:
  """log w_k + log N(x; mean_k, L_k L_k^T) [N, K] (`chol` the factors or, diagonal, the
  standard deviations [K, d]): with P_k = L_k^-T, the Mahalanobis term is |x P_k - mean_k P_k|^2,
  every component's x P_k from one matrix product."""
  k, d = means.shape
  if chol.ndim == 2:
    inv = 1.0 / np.square(chol)
    maha = (x * x) @ inv.T - 2 * x @ (means * inv).T + (means * means * inv).sum(1)
    log_det = 2 * np.log(chol).sum(1)
  else:
    prec = np.linalg.inv(chol).transpose(0, 2, 1)   # L_k^-T [K, d, d], batched
    y = (x @ prec.transpose(1, 0, 2).reshape(d, k * d)).reshape(len(x), k, d)
    y -= np.einsum('kd,kde->ke', means, prec)[None]
    maha = np.square(y).sum(2)
    log_det = 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(1)
  return np.log(weights) - 0.5 * (np.maximum(maha, 0.0) + log_det + d * LOG_2PI)
