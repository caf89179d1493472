"""Disentanglement metrics of a representation against known discrete factors of variation, with
google-research/disentanglement_lib's definitions (disentanglement_lib/evaluation/metrics/
{beta_vae, factor_vae, mig, dci, sap_score, modularity_explicitness, unsupervised_metrics,
utils}.py, read at commit 86a644d) and its published sample counts (the unsupervised study's
metric_configs/*.gin) as defaults; aelab's own code, numpy and scipy only (no sklearn).

Three layers, each usable alone:
  helpers    fit_logistic (-> Logistic), discretize, mutual_info, mutual_info_matrix, entropy,
             roc_auc: written once, shared by the metrics.
  scores     functions on arrays: codes [n, D] (one row per observation, the representation's
             D dimensions) and factors int [n, K] (value indices), or what is derived from them
             (votes, importance, score and mutual-information matrices, a covariance).
  compute_*  the sampling and the scores of one metric: `represent(factors int32 [n, K]) ->
             codes [n, D]` renders and encodes factor rows (aelab/evaluators/disentanglement.py
             builds it from Factors.observe and the run's forward pass); `counts` the number of
             values of each factor; `rng` a numpy Generator. Factors are drawn uniformly and
             independently, as disentanglement_lib's ground-truth data sample them. Each returns
             {metric name: float} (KEYS).

Differences from disentanglement_lib (each metric's docstring says its own):
  - Classifiers. Every learned classifier is `fit_logistic`: a multinomial (softmax) logistic
    regression with an L2 penalty of 1 / (2 c) ||W||^2 on the summed log-loss (sklearn's form,
    c = 1 as its default, intercepts not penalised), fitted by scipy's L-BFGS with sklearn's
    stopping rule (MAX_ITER iterations, gradient tolerance GTOL), on inputs standardised with
    the training rows' mean and std (sklearn does not standardise; it makes the penalty
    independent of the code's scale). It stands in
    for sklearn's LogisticRegression (BetaVAE, explicitness: the same model family), its
    GradientBoostingClassifier (DCI) and its LinearSVC(C=0.01, class_weight='balanced') (SAP).
  - The draws. Same laws, different random numbers: numpy's Generator, vectorised over the
    points (disentanglement_lib draws point by point from a RandomState), one stream per metric.
  - Degenerate input gives finite figures where disentanglement_lib gives nan, inf or an
    exception: a factor constant over the sample, one code dimension, one factor (each says
    what it gives); zero points or non-finite codes are one-line AelabErrors.
  - Speed. The products inside the logistic regression are np.einsum, not BLAS: OpenBLAS's
    threads crawl on a shared busy CPU (a 10-dim, 40-class fit of 10,000 rows: 25 s instead of
    2 s on 2 loaded cores).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import scipy.optimize

from aelab.errors import AelabError

NUM_BINS = 20           # the histogram discretizer's bins per code dimension (disentanglement_lib)
MAX_ITER = 100          # L-BFGS iterations of a logistic regression (sklearn's default)
GTOL = 1e-4             # ... and its gradient tolerance on the loss over the summed weights
BLOCK_ROWS = 1 << 16    # factor rows passed to `represent` at a time
PRUNE_STD = 0.05        # FactorVAE: dims whose global std is below this are inactive

METRICS = ('beta_vae', 'factor_vae', 'mig', 'dci', 'sap', 'modularity', 'unsupervised')
KEYS = {
    'beta_vae': ('beta_vae_train_accuracy', 'beta_vae_eval_accuracy'),
    'factor_vae': ('factor_vae_train_accuracy', 'factor_vae_eval_accuracy',
                   'factor_vae_active_dims'),
    'mig': ('mig',),
    'dci': ('dci_disentanglement', 'dci_completeness', 'dci_informativeness_train',
            'dci_informativeness_test'),
    'sap': ('sap',),
    'modularity': ('modularity', 'explicitness_train', 'explicitness_test'),
    'unsupervised': ('gaussian_total_correlation', 'gaussian_wasserstein_correlation',
                     'gaussian_wasserstein_correlation_norm', 'mutual_info_score'),
}

Represent = Callable[[np.ndarray], np.ndarray]


class NonFiniteCodes(AelabError):
  """The representation gave NaN or inf codes (a diverged model)."""


# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------

def _codes(codes, what: str = 'codes') -> np.ndarray:
  """float64 [n >= 1, D >= 1], finite (one-line AelabErrors)."""
  c = np.asarray(codes)
  if c.ndim != 2 or not np.issubdtype(c.dtype, np.number) or not c.shape[1]:
    raise AelabError(f'{what} must be a numeric array [points, code dims]; got {c.dtype} '
                     f'{c.shape}: flatten each code first')
  if not len(c):
    raise AelabError(f'{what} has no points: a disentanglement metric needs at least one')
  if not np.isfinite(c).all():
    raise NonFiniteCodes(f'{what}: {int(np.sum(~np.isfinite(c).all(1)))} of {len(c)} codes are '
                         f'not finite (NaN or inf): the model diverged')
  return c.astype(np.float64)


def _labels(labels, n: int | None = None, what: str = 'factors') -> np.ndarray:
  """int64 [n, K] (a 1-d array is one column)."""
  y = np.asarray(labels)
  y = y[:, None] if y.ndim == 1 else y
  if y.ndim != 2 or not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
    raise AelabError(f'{what} must be integer value indices [points, factors]; got {y.dtype} '
                     f'{y.shape}')
  if n is not None and len(y) != n:
    raise AelabError(f'{what} has {len(y)} rows and the codes {n}: pass one row per code')
  if not len(y):
    raise AelabError(f'{what} has no points: a disentanglement metric needs at least one')
  return y.astype(np.int64)


def _count(value, name: str, low: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
    raise AelabError(f'{name} must be an integer >= {low}; got {value!r}')
  return int(value)


def _counts(counts: Sequence[int]) -> np.ndarray:
  c = np.asarray(counts)
  if c.ndim != 1 or not len(c) or not np.issubdtype(c.dtype, np.integer) or (c < 1).any():
    raise AelabError(f'counts must be one positive number of values per factor; got {counts!r}')
  return c.astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Helpers: the logistic regression, the discretizer, discrete information, ROC AUC
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Logistic:
  """A fitted multinomial logistic regression: logits = ((x - mean) / scale) @ weights + bias
  (weights [D, C] on the standardised inputs, bias [C]); column c is label classes[c]."""
  weights: np.ndarray
  bias: np.ndarray
  mean: np.ndarray
  scale: np.ndarray
  classes: np.ndarray

  def logits(self, x) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return ((x - self.mean) / self.scale) @ self.weights + self.bias

  def proba(self, x) -> np.ndarray:
    """[n, C] class probabilities (softmax of the logits)."""
    z = self.logits(x)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)

  def predict(self, x) -> np.ndarray:
    """[n] the most probable class's label (ties: the lowest column)."""
    return self.classes[np.argmax(self.logits(x), axis=1)]

  def accuracy(self, x, y) -> float:
    return float(np.mean(self.predict(x) == np.asarray(y)))


def fit_logistic(x, y, c: float = 1.0, balanced: bool = False,
                 max_iter: int = MAX_ITER) -> Logistic:
  """Multinomial logistic regression of labels y [n] on x [n, D]: minimises
  sum_i w_i CE(softmax(z_i W + b), y_i) + ||W||^2 / (2 c), z the x standardised with their own
  mean and std (a constant column: std 1), by L-BFGS (float64, from zero, at most `max_iter`
  iterations). w_i = 1, or with `balanced` n / (classes x n_{y_i}) (sklearn's
  class_weight='balanced').
  The classes are the distinct labels of y (one class: a constant model)."""
  x = np.asarray(x)
  x = _codes(x.reshape(len(x), -1), 'x')
  y = _labels(y, len(x), 'labels')[:, 0]
  classes, idx = np.unique(y, return_inverse=True)
  mean, scale = x.mean(axis=0), x.std(axis=0)
  scale = np.where(scale > 0, scale, 1.0)
  z = (x - mean) / scale
  n, d, k = len(z), z.shape[1], len(classes)
  if k == 1:
    return Logistic(np.zeros((d, 1)), np.zeros(1), mean, scale, classes)
  weight = n / (k * np.bincount(idx)[idx]) if balanced else np.ones(n)
  rows = np.arange(n)

  def objective(theta):
    # einsum, not BLAS: OpenBLAS's threads crawl on a shared, busy CPU (10x on 2 cores)
    w, b = theta[:d * k].reshape(d, k), theta[d * k:]
    logits = np.einsum('nd,dk->nk', z, w) + b
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    total = e.sum(axis=1)
    loss = -np.sum(weight * (logits[rows, idx] - np.log(total))) + np.sum(w * w) / (2 * c)
    g = e / total[:, None]
    g[rows, idx] -= 1.0
    g *= weight[:, None]
    grad = np.concatenate([(np.einsum('nd,nk->dk', z, g) + w / c).ravel(), g.sum(axis=0)])
    return loss / scale_loss, grad / scale_loss   # sklearn's scaling: its tolerances apply

  scale_loss = float(weight.sum())
  fit = scipy.optimize.minimize(objective, np.zeros(d * k + k), jac=True, method='L-BFGS-B',
                                options={'maxiter': max_iter, 'maxls': 50, 'gtol': GTOL,
                                         'ftol': 64 * np.finfo(float).eps})
  return Logistic(fit.x[:d * k].reshape(d, k), fit.x[d * k:], mean, scale, classes)


def discretize(codes, num_bins: int = NUM_BINS) -> np.ndarray:
  """int64 [n, D]: each code column's bin, 1 .. num_bins: np.digitize against the left edges of
  np.histogram(column, num_bins) (num_bins equal bins over the column's range; its maximum in
  the last bin), disentanglement_lib's histogram_discretizer."""
  c = _codes(codes)
  num_bins = _count(num_bins, 'num_bins')
  out = np.empty(c.shape, np.int64)
  for j in range(c.shape[1]):
    out[:, j] = np.digitize(c[:, j], np.histogram(c[:, j], num_bins)[1][:-1])
  return out


def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  _, ia = np.unique(a, return_inverse=True)
  _, ib = np.unique(b, return_inverse=True)
  na, nb = ia.max() + 1, ib.max() + 1
  return np.bincount(ia * nb + ib, minlength=na * nb).reshape(na, nb).astype(np.float64)


def mutual_info(a, b) -> float:
  """I(a; b) in nats of two discrete label arrays [n] from their empirical joint law:
  sum_ij p_ij log(p_ij / (p_i p_j)), clipped at 0 (sklearn's mutual_info_score)."""
  a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
  if len(a) != len(b) or not len(a):
    raise AelabError(f'mutual_info needs two label arrays of the same non-zero length; got '
                     f'{len(a)} and {len(b)}')
  p = _contingency(a, b) / len(a)
  outer = p.sum(axis=1)[:, None] * p.sum(axis=0)[None, :]
  nz = p > 0
  return max(float(np.sum(p[nz] * (np.log(p[nz]) - np.log(outer[nz])))), 0.0)


def mutual_info_matrix(a, b) -> np.ndarray:
  """[Da, Db]: mutual_info of each column of a [n, Da] with each column of b [n, Db] (discrete
  labels, e.g. `discretize`d codes and factors)."""
  a, b = _labels(a, None, 'a'), _labels(b, len(np.asarray(a)), 'b')
  return np.array([[mutual_info(a[:, i], b[:, j]) for j in range(b.shape[1])]
                   for i in range(a.shape[1])]).reshape(a.shape[1], b.shape[1])


def entropy(labels) -> float:
  """H(labels) in nats of a discrete label array [n] (= mutual_info(labels, labels))."""
  labels = np.asarray(labels).ravel()
  if not len(labels):
    raise AelabError('entropy needs at least one label')
  p = np.unique(labels, return_counts=True)[1] / len(labels)
  return max(float(-np.sum(p * np.log(p))), 0.0)


def _average_ranks(v: np.ndarray) -> np.ndarray:
  """Ranks 1 .. n of v, ties given the mean of the ranks they span."""
  _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
  return (np.cumsum(counts) - counts + (counts + 1) / 2.0)[inverse]


def roc_auc(positive, scores) -> float:
  """Area under the ROC curve of `scores` [n] ranking the rows where `positive` [n] (bool)
  above the others: the Mann-Whitney U / (n_pos n_neg), ties by average rank (a tie between a
  positive and a negative counts 1/2)."""
  positive = np.asarray(positive, bool).ravel()
  scores = np.asarray(scores, np.float64).ravel()
  n_pos = int(positive.sum())
  n_neg = len(positive) - n_pos
  if len(scores) != len(positive) or not n_pos or not n_neg:
    raise AelabError(f'roc_auc needs scores for each row and both positive and negative rows; '
                     f'got {len(scores)} scores, {n_pos} positive and {n_neg} negative rows')
  ranks = _average_ranks(scores)
  return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


# ----------------------------------------------------------------------------------------------
# Sampling through `represent`
# ----------------------------------------------------------------------------------------------

def sample_factors(rng: np.random.Generator, counts: Sequence[int], n: int) -> np.ndarray:
  """int32 [n, K]: n rows of independent uniform value indices, factor k in 0 .. counts[k] - 1."""
  counts = _counts(counts)
  return rng.integers(0, counts, size=(int(n), len(counts))).astype(np.int32)


def represent_rows(represent: Represent, factors: np.ndarray) -> np.ndarray:
  """float64 [n, D]: represent(factors) in blocks of BLOCK_ROWS rows, checked (finite, one row
  per factor row; a code of any shape is flattened)."""
  parts = []
  for start in range(0, len(factors), BLOCK_ROWS):
    block = factors[start:start + BLOCK_ROWS]
    z = np.asarray(represent(block))
    if z.ndim < 2 or len(z) != len(block):
      raise AelabError(f'the representation gave codes of shape {z.shape} for {len(block)} '
                       f'factor rows; it must give one code per row')
    parts.append(_codes(z.reshape(len(z), -1)))
  if not parts:
    raise AelabError('no factor rows to represent: a disentanglement metric needs at least one')
  return np.concatenate(parts)


def factor_codes(represent: Represent, counts: Sequence[int], rng: np.random.Generator,
                 n: int) -> tuple[np.ndarray, np.ndarray]:
  """(codes float64 [n, D], factors int32 [n, K]) of n uniform factor rows
  (disentanglement_lib's generate_batch_factor_code)."""
  factors = sample_factors(rng, counts, _count(n, 'the number of points'))
  return represent_rows(represent, factors), factors


def _fixed_factor_batches(rng, counts, num_points: int, batch_size: int):
  """(k [P], factors int32 [P, B, K]): for each point a uniform factor k and a batch of B
  uniform factor rows."""
  counts = _counts(counts)
  k = rng.integers(len(counts), size=num_points)
  return k, sample_factors(rng, counts, num_points * batch_size).reshape(
      num_points, batch_size, len(counts))


def beta_vae_points(represent: Represent, counts: Sequence[int], rng: np.random.Generator,
                    batch_size: int, num_points: int) -> tuple[np.ndarray, np.ndarray]:
  """(features [P, D], labels int [P]) of the BetaVAE score: for each point a uniform factor k
  (its label) and `batch_size` pairs of uniform factor rows sharing factor k's value; the
  feature is the mean over the pairs of |z1 - z2| (codes of the two rows)."""
  num_points, batch_size = _count(num_points, 'num_points'), _count(batch_size, 'batch_size')
  k, first = _fixed_factor_batches(rng, counts, num_points, batch_size)
  second = sample_factors(rng, counts, num_points * batch_size).reshape(first.shape)
  points = np.arange(num_points)
  second[points[:, None], np.arange(batch_size)[None, :], k[:, None]] = first[points, :, k]
  features = []
  per_block = max(1, BLOCK_ROWS // (2 * batch_size))
  for start in range(0, num_points, per_block):
    f1, f2 = first[start:start + per_block], second[start:start + per_block]
    z = represent_rows(represent, np.concatenate([f1.reshape(-1, f1.shape[-1]),
                                                  f2.reshape(-1, f2.shape[-1])]))
    z1, z2 = np.split(z, 2)
    features.append(np.abs(z1 - z2).reshape(len(f1), batch_size, -1).mean(axis=1))
  return np.concatenate(features), k


def factor_vae_votes(represent: Represent, counts: Sequence[int], rng: np.random.Generator,
                     batch_size: int, num_points: int, variances: np.ndarray,
                     active: np.ndarray) -> np.ndarray:
  """int64 votes [K, D] of the FactorVAE score: for each point a uniform factor k and a batch
  of `batch_size` uniform rows with factor k's value shared (the first row's); its vote goes to
  (k, d), d the active dim with the least within-batch variance (ddof 1) over the global
  variance `variances` [D] (ties: the lowest d). `active` bool [D], at least one."""
  num_points = _count(num_points, 'num_points')
  batch_size = _count(batch_size, 'the FactorVAE batch_size', low=2)
  variances, active = np.asarray(variances, np.float64), np.asarray(active, bool)
  dims = np.flatnonzero(active)
  if not len(dims) or (variances[dims] <= 0).any():
    raise AelabError('factor_vae_votes needs at least one active dim, each with a positive '
                     'global variance')
  k, factors = _fixed_factor_batches(rng, counts, num_points, batch_size)
  points = np.arange(num_points)
  factors[points, :, k] = factors[points, 0, k][:, None]
  votes = np.zeros((len(_counts(counts)), len(variances)), np.int64)
  per_block = max(1, BLOCK_ROWS // batch_size)
  for start in range(0, num_points, per_block):
    f = factors[start:start + per_block]
    z = represent_rows(represent, f.reshape(-1, f.shape[-1])).reshape(len(f), batch_size, -1)
    if z.shape[2] != len(variances):
      raise AelabError(f'codes have {z.shape[2]} dims and the variances {len(variances)}')
    ratio = np.var(z[:, :, dims], axis=1, ddof=1) / variances[dims]
    np.add.at(votes, (k[start:start + per_block], dims[np.argmin(ratio, axis=1)]), 1)
  return votes


# ----------------------------------------------------------------------------------------------
# Scores on arrays
# ----------------------------------------------------------------------------------------------

def beta_vae_score(train_features, train_labels, eval_features, eval_labels) -> tuple[float,
                                                                                    float]:
  """(train accuracy, eval accuracy) of `fit_logistic` predicting the fixed factor from the
  BetaVAE features (`beta_vae_points`)."""
  model = fit_logistic(train_features, train_labels)
  return (model.accuracy(train_features, train_labels),
          model.accuracy(eval_features, eval_labels))


def prune_dims(variances, threshold: float = PRUNE_STD) -> np.ndarray:
  """bool [D]: the active dims, whose global std sqrt(variance) is at least `threshold` (and
  the variance positive): disentanglement_lib's prune_dims (its gin threshold 0.05)."""
  v = np.asarray(variances, np.float64)
  return (np.sqrt(np.maximum(v, 0.0)) >= threshold) & (v > 0)


def factor_vae_score(train_votes, eval_votes) -> tuple[float, float]:
  """(train accuracy, eval accuracy) of the majority-vote classifier: each dim d predicts the
  factor with most training votes for it (ties: the lowest factor); accuracy = votes where
  the prediction holds / all votes (0 for no votes)."""
  train, other = np.asarray(train_votes), np.asarray(eval_votes)
  classifier = np.argmax(train, axis=0)
  dims = np.arange(train.shape[1])
  accuracy = lambda v: float(v[classifier, dims].sum() / v.sum()) if v.sum() else 0.0  # noqa
  return accuracy(train), accuracy(other)


def mig_per_factor(mi, entropies) -> np.ndarray:
  """[K]: (largest - second largest mutual information of factor k with a code dim) / H(k),
  from mi [D, K] (nats) and the factors' entropies [K]; with one code dim the second is 0; a
  factor of entropy 0 (constant over the sample) gives 0 (disentanglement_lib: nan)."""
  mi, h = np.asarray(mi, np.float64), np.asarray(entropies, np.float64)
  top = np.sort(mi, axis=0)[::-1]
  second = top[1] if len(top) > 1 else np.zeros(mi.shape[1])
  return np.where(h > 0, (top[0] - second) / np.where(h > 0, h, 1.0), 0.0)


def mig(codes, factors, num_bins: int = NUM_BINS) -> np.ndarray:
  """[K]: each factor's MIG term (`mig_per_factor`) with codes [n, D] discretised into
  `num_bins` bins (`discretize`); the MIG is their mean."""
  c = _codes(codes)
  f = _labels(factors, len(c))
  mi = mutual_info_matrix(discretize(c, num_bins), f)
  return mig_per_factor(mi, [entropy(f[:, k]) for k in range(f.shape[1])])


def _one_minus_entropy(p: np.ndarray, base: int) -> np.ndarray:
  """1 - entropy (base `base`) of each row of p (rows normalised; +1e-11 as
  disentanglement_lib); base 1 (one column): 1."""
  if base < 2:
    return np.ones(len(p))
  q = p + 1e-11
  q = q / q.sum(axis=1, keepdims=True)
  return 1.0 - (-np.sum(q * np.log(q), axis=1) / np.log(base))


def dci_importance(train_codes, train_factors, test_codes,
                   test_factors) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(importance [D, K], train accuracy [K], test accuracy [K]). Per factor k, `fit_logistic`
  of its value on the codes (standardised); the importance of dim j for k is the mean over the
  classes of |W[j, c]|, each column then normalised to sum 1 (0 for a factor the classifier
  gives no weight); the accuracies are that classifier's, the informativeness.

  disentanglement_lib fits a GradientBoostingClassifier per factor and takes its
  feature_importances_ (also summing to 1 per factor): a linear classifier instead here, with
  importances from the magnitude of its (standardised) weights as Eastwood & Williams's own
  lasso-based importances. A factor that is a non-monotone function of one dim is then less
  well predicted (and its importance less sharply placed) than by trees."""
  c_train, c_test = _codes(train_codes, 'train codes'), _codes(test_codes, 'test codes')
  f_train = _labels(train_factors, len(c_train), 'train factors')
  f_test = _labels(test_factors, len(c_test), 'test factors')
  k = f_train.shape[1]
  importance = np.zeros((c_train.shape[1], k))
  train_acc, test_acc = np.zeros(k), np.zeros(k)
  for i in range(k):
    model = fit_logistic(c_train, f_train[:, i])
    column = np.abs(model.weights).mean(axis=1)
    importance[:, i] = column / column.sum() if column.sum() > 0 else column
    train_acc[i] = model.accuracy(c_train, f_train[:, i])
    test_acc[i] = model.accuracy(c_test, f_test[:, i])
  return importance, train_acc, test_acc


def dci_disentanglement(importance) -> float:
  """sum_j rho_j (1 - H_K(P_j)), P_j dim j's importance row normalised, H_K the entropy base K
  (factors), rho_j = dim j's share of the total importance (uniform where it is all 0); one
  factor: 1 per dim."""
  r = np.asarray(importance, np.float64)
  per_code = _one_minus_entropy(r, r.shape[1])
  r = r if r.sum() > 0 else np.ones_like(r)
  return float(np.sum(per_code * r.sum(axis=1) / r.sum()))


def dci_completeness(importance) -> float:
  """sum_k rho_k (1 - H_D(P_k)), P_k factor k's importance column normalised, H_D the entropy
  base D (code dims), rho_k = factor k's share of the total importance (disentanglement_lib's
  weighting; with `dci_importance`'s columns each summing to 1 it is the mean over factors);
  one code dim: 1 per factor."""
  r = np.asarray(importance, np.float64)
  per_factor = _one_minus_entropy(r.T, r.shape[0])
  r = r if r.sum() > 0 else np.ones_like(r)
  return float(np.sum(per_factor * r.sum(axis=0) / r.sum()))


def sap_score_matrix(train_codes, train_factors, test_codes, test_factors) -> np.ndarray:
  """[D, K]: the test accuracy of `fit_logistic(balanced=True)` predicting factor k from code
  dim j ALONE. disentanglement_lib (discrete factors) fits sklearn's LinearSVC(C=0.01,
  class_weight='balanced') on the one dim: one-vs-rest hinge loss, strongly regularised; here
  a one-dimensional softmax classifier, class-balanced, with the usual weak penalty (c = 1)."""
  c_train, c_test = _codes(train_codes, 'train codes'), _codes(test_codes, 'test codes')
  f_train = _labels(train_factors, len(c_train), 'train factors')
  f_test = _labels(test_factors, len(c_test), 'test factors')
  out = np.zeros((c_train.shape[1], f_train.shape[1]))
  for j in range(c_train.shape[1]):
    for k in range(f_train.shape[1]):
      model = fit_logistic(c_train[:, j:j + 1], f_train[:, k], balanced=True)
      out[j, k] = model.accuracy(c_test[:, j:j + 1], f_test[:, k])
  return out


def sap_gap(score_matrix) -> float:
  """Mean over factors (columns) of the gap between the two largest scores over code dims
  (rows); one code dim: its score (the second is 0)."""
  s = np.sort(np.asarray(score_matrix, np.float64), axis=0)
  second = s[-2] if len(s) > 1 else np.zeros(s.shape[1])
  return float(np.mean(s[-1] - second))


def modularity_per_code(mi) -> np.ndarray:
  """[D]: 1 - (sum_k m_jk^2 - max_k m_jk^2) / (max_k m_jk^2 (K - 1)) from the mutual
  information mi [D, K] (Ridgeway & Mozer, as disentanglement_lib); 0 for a dim with no
  information; one factor: 1 for a dim with information."""
  sq = np.square(np.asarray(mi, np.float64))
  top = sq.max(axis=1)
  if sq.shape[1] == 1:
    return (top > 0).astype(np.float64)
  delta = (sq.sum(axis=1) - top) / np.where(top > 0, top * (sq.shape[1] - 1), 1.0)
  return np.where(top > 0, 1.0 - delta, 0.0)


def modularity(codes, factors, num_bins: int = NUM_BINS) -> float:
  """The mean of `modularity_per_code` over the code dims, with codes [n, D] discretised into
  `num_bins` bins. A dim that carries nothing (noise) has similar small MI with every factor
  and so a LOW modularity: noise dims pull the mean down."""
  c = _codes(codes)
  return float(np.mean(modularity_per_code(
      mutual_info_matrix(discretize(c, num_bins), _labels(factors, len(c))))))


def explicitness(train_codes, train_factors, test_codes,
                 test_factors) -> tuple[np.ndarray, np.ndarray]:
  """(train AUC [K], test AUC [K]): per factor, `fit_logistic` of its value on all the code
  dims (standardised with the training rows' mean and std, as disentanglement_lib's
  normalize_data), and the mean over its classes of the one-vs-rest ROC AUC of that class's
  probability (sklearn's roc_auc_score on the binarised labels, macro average). A class with
  no positive or no negative row in a set is left out of that set's mean, and so is a test
  label the classifier never saw (sklearn: an error); none left: 0.5."""
  c_train, c_test = _codes(train_codes, 'train codes'), _codes(test_codes, 'test codes')
  f_train = _labels(train_factors, len(c_train), 'train factors')
  f_test = _labels(test_factors, len(c_test), 'test factors')
  k = f_train.shape[1]
  train_auc, test_auc = np.zeros(k), np.zeros(k)
  for i in range(k):
    model = fit_logistic(c_train, f_train[:, i])
    for out, c, y in ((train_auc, c_train, f_train[:, i]), (test_auc, c_test, f_test[:, i])):
      p = model.proba(c)
      aucs = [roc_auc(y == label, p[:, col]) for col, label in enumerate(model.classes)
              if 0 < np.sum(y == label) < len(y)]
      out[i] = float(np.mean(aucs)) if aucs else 0.5
  return train_auc, test_auc


def _varying(cov) -> np.ndarray:
  """The covariance of the dims with positive variance (a constant dim is independent of the
  others and adds nothing to either correlation)."""
  cov = np.atleast_2d(np.asarray(cov, np.float64))
  keep = np.diag(cov) > 0
  return cov[np.ix_(keep, keep)]


def gaussian_total_correlation(cov) -> float:
  """KL(N(0, S) || N(0, diag S)) = 0.5 (sum_j log S_jj - log det S) of a covariance S
  (disentanglement_lib); constant dims left out; eigenvalues floored at 1e-12 x the largest
  variance, so linearly dependent dims give a large finite value (disentanglement_lib: inf)."""
  s = _varying(cov)
  if not len(s):
    return 0.0
  w = np.linalg.eigvalsh((s + s.T) / 2)
  logdet = np.sum(np.log(np.maximum(w, 1e-12 * np.diag(s).max())))
  return max(float(0.5 * (np.sum(np.log(np.diag(s))) - logdet)), 0.0)


def gaussian_wasserstein_correlation(cov) -> float:
  """2 tr S - 2 tr (diag(S) S)^(1/2): the squared 2-Wasserstein distance between N(0, S) and
  N(0, diag S) (disentanglement_lib, its scipy sqrtm of S * diag(S)[:, None]); the trace from
  the eigenvalues of the similar symmetric D^(1/2) S D^(1/2), D = diag(S)."""
  s = _varying(cov)
  if not len(s):
    return 0.0
  root = np.sqrt(np.diag(s))
  w = np.linalg.eigvalsh(root[:, None] * s * root[None, :])
  return max(float(2 * np.trace(s) - 2 * np.sum(np.sqrt(np.maximum(w, 0.0)))), 0.0)


def mean_mutual_info(codes, num_bins: int = NUM_BINS) -> float:
  """The mean over pairs of distinct code dims of their mutual information (nats), the codes
  discretised into `num_bins` bins (disentanglement_lib's mutual_info_score); one dim: 0."""
  d = discretize(codes, num_bins)
  if d.shape[1] < 2:
    return 0.0
  m = mutual_info_matrix(d, d)
  np.fill_diagonal(m, 0.0)
  return float(m.sum() / (d.shape[1] ** 2 - d.shape[1]))


def unsupervised_scores(codes, num_bins: int = NUM_BINS) -> dict[str, float]:
  """{gaussian_total_correlation, gaussian_wasserstein_correlation, its _norm (/ tr S, 0 for
  S = 0), mutual_info_score} of codes [n, D], S their covariance (ddof 1; 0 for one row)."""
  c = _codes(codes)
  cov = np.cov(c, rowvar=False).reshape(c.shape[1], c.shape[1]) if len(c) > 1 else \
      np.zeros((c.shape[1], c.shape[1]))
  wasserstein = gaussian_wasserstein_correlation(cov)
  trace = float(np.trace(cov))
  return {'gaussian_total_correlation': gaussian_total_correlation(cov),
          'gaussian_wasserstein_correlation': wasserstein,
          'gaussian_wasserstein_correlation_norm': wasserstein / trace if trace > 0 else 0.0,
          'mutual_info_score': mean_mutual_info(c, num_bins)}


# ----------------------------------------------------------------------------------------------
# The metrics: sampling and scores (disentanglement_lib's published sample counts as defaults)
# ----------------------------------------------------------------------------------------------

def compute_beta_vae(represent: Represent, counts: Sequence[int], rng: np.random.Generator,
                     batch_size: int = 64, num_train: int = 10000,
                     num_eval: int = 5000) -> dict[str, float]:
  """BetaVAE score (Higgins et al. 2017): `beta_vae_points` for num_train training and
  num_eval evaluation points (batch_size pairs each), then `beta_vae_score`.
  Cost: 2 batch_size (num_train + num_eval) observations (1.92M by default)."""
  train = beta_vae_points(represent, counts, rng, batch_size, _count(num_train, 'num_train'))
  other = beta_vae_points(represent, counts, rng, batch_size, _count(num_eval, 'num_eval'))
  train_acc, eval_acc = beta_vae_score(*train, *other)
  return {'beta_vae_train_accuracy': train_acc, 'beta_vae_eval_accuracy': eval_acc}


def compute_factor_vae(represent: Represent, counts: Sequence[int], rng: np.random.Generator,
                       batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000,
                       num_variance_estimate: int = 10000,
                       threshold: float = PRUNE_STD) -> dict[str, float]:
  """FactorVAE score (Kim & Mnih 2018): the global variance (ddof 1) of each code dim over
  num_variance_estimate uniform observations, `prune_dims` at std `threshold`, votes
  (`factor_vae_votes`) of num_train and num_eval points, `factor_vae_score`. No active dim:
  accuracies 0. factor_vae_active_dims is the number of active dims (disentanglement_lib
  reports len() of its boolean mask: every dim). Cost: num_variance_estimate + batch_size
  (num_train + num_eval) observations (970k by default)."""
  codes, _ = factor_codes(represent, counts, rng,
                          _count(num_variance_estimate, 'num_variance_estimate', low=2))
  variances = np.var(codes, axis=0, ddof=1)
  active = prune_dims(variances, threshold)
  if not active.any():
    return {'factor_vae_train_accuracy': 0.0, 'factor_vae_eval_accuracy': 0.0,
            'factor_vae_active_dims': 0.0}
  train = factor_vae_votes(represent, counts, rng, batch_size, num_train, variances, active)
  other = factor_vae_votes(represent, counts, rng, batch_size, num_eval, variances, active)
  train_acc, eval_acc = factor_vae_score(train, other)
  return {'factor_vae_train_accuracy': train_acc, 'factor_vae_eval_accuracy': eval_acc,
          'factor_vae_active_dims': float(active.sum())}


def compute_mig(represent: Represent, counts: Sequence[int], rng: np.random.Generator,
                num_train: int = 10000, num_bins: int = NUM_BINS) -> dict[str, float]:
  """Mutual information gap (Chen et al. 2018, disentanglement_lib's discrete_mig): the mean
  over factors of `mig` on num_train uniform observations, codes in num_bins bins."""
  codes, factors = factor_codes(represent, counts, rng, num_train)
  return {'mig': float(np.mean(mig(codes, factors, num_bins)))}


def compute_dci(represent: Represent, counts: Sequence[int], rng: np.random.Generator,
                num_train: int = 10000, num_test: int = 5000) -> dict[str, float]:
  """DCI (Eastwood & Williams 2018): `dci_importance` from num_train training and num_test
  test observations; disentanglement, completeness, and informativeness = the mean over
  factors of the classifiers' train / test accuracy (linear classifiers, not
  disentanglement_lib's gradient-boosted trees: see `dci_importance`)."""
  train = factor_codes(represent, counts, rng, num_train)
  test = factor_codes(represent, counts, rng, num_test)
  importance, train_acc, test_acc = dci_importance(*train, *test)
  return {'dci_disentanglement': dci_disentanglement(importance),
          'dci_completeness': dci_completeness(importance),
          'dci_informativeness_train': float(train_acc.mean()),
          'dci_informativeness_test': float(test_acc.mean())}


def compute_sap(represent: Represent, counts: Sequence[int], rng: np.random.Generator,
                num_train: int = 10000, num_test: int = 5000) -> dict[str, float]:
  """SAP score (Kumar et al. 2018), discrete factors: `sap_gap` of `sap_score_matrix` from
  num_train training and num_test test observations (one-dimensional softmax classifiers, not
  LinearSVC: see `sap_score_matrix`)."""
  train = factor_codes(represent, counts, rng, num_train)
  test = factor_codes(represent, counts, rng, num_test)
  return {'sap': sap_gap(sap_score_matrix(*train, *test))}


def compute_modularity(represent: Represent, counts: Sequence[int], rng: np.random.Generator,
                       num_train: int = 10000, num_test: int = 5000,
                       num_bins: int = NUM_BINS) -> dict[str, float]:
  """Modularity and explicitness (Ridgeway & Mozer 2018): `modularity` of num_train training
  observations (codes in num_bins bins), and the mean over factors of `explicitness` (train on
  the training observations, test on num_test others)."""
  train = factor_codes(represent, counts, rng, num_train)
  test = factor_codes(represent, counts, rng, num_test)
  train_auc, test_auc = explicitness(*train, *test)
  return {'modularity': modularity(*train, num_bins),
          'explicitness_train': float(train_auc.mean()),
          'explicitness_test': float(test_auc.mean())}


def compute_unsupervised(represent: Represent, counts: Sequence[int], rng: np.random.Generator,
                         num_train: int = 10000, num_bins: int = NUM_BINS) -> dict[str, float]:
  """disentanglement_lib's unsupervised_metrics: `unsupervised_scores` of num_train uniform
  observations' codes (the factors are only sampled, never scored)."""
  codes, _ = factor_codes(represent, counts, rng, num_train)
  return unsupervised_scores(codes, num_bins)


COMPUTE = {'beta_vae': compute_beta_vae, 'factor_vae': compute_factor_vae, 'mig': compute_mig,
           'dci': compute_dci, 'sap': compute_sap, 'modularity': compute_modularity,
           'unsupervised': compute_unsupervised}
