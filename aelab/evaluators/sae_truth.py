"""Ground-truth scores of a sparse dictionary (aelab/models/sae.py) against the true features
that generated its data, with SynthSAEBench's definitions (SAELens, sae_lens/synthetic/evals.py,
decoderesearch/SAELens; functions and classes named below, read at commit ae20a2d).

Similarities are ABSOLUTE cosine similarities |cos(w_i, f_j)| between decoder row w_i and true
direction f_j, rows normalised with their norm clamped at 1e-8 (sae_lens/util.py
`cosine_similarities`, then `.abs()` in every caller): a decoder row pointing at -f_j counts as
a match, as in SAELens.

Decoder-only (`match`, `mcc`, `uniqueness`, `decoder_scores`):
  mcc           Hungarian matching (scipy.optimize.linear_sum_assignment) of latents to true
                features maximising the summed |cos|, one to one; the mean |cos| over the matched
                pairs. With different widths the assignment is rectangular: min(n_latents,
                n_features) pairs, the surplus latents (or features) unmatched and left out of
                the mean (`mean_correlation_coefficient`).
  uniqueness    each latent's best true feature (argmax_j |cos|, NOT the Hungarian one); the
                number of distinct true features among them / n_latents, 0 for no latents
                (`feature_uniqueness`). At most n_features / n_latents for a wider dictionary.

From the latents' firing over a split, streamed in batches (`firing_counts` in the jitted step,
its sums added over batches, then `firing_scores`); fires means > 0, for latents and true codes:
  precision, recall, f1, accuracy
                each latent as a binary detector of ITS BEST-COSINE true feature (argmax |cos|,
                as uniqueness; `ClassificationMetricsCalculator`): tp, fp, fn, tn counted over
                rows; precision = tp / (tp + fp), recall = tp / (tp + fn), f1 = 2 p r / (p + r),
                each 0 where its denominator is 0 (a latent that never fires: precision 0,
                recall 0, f1 0), accuracy = (tp + tn) / rows; each averaged over ALL latents,
                dead ones included (`compute`).
  shrinkage     mean over rows of ||x_hat|| / ||x||, rows with ||x|| <= 1e-6 left out, 0 when no
                row is left (`ShrinkageCalculator`); 1 = no shrinkage. SAELens takes both in the
                space the data were generated in (the SAE's output unscaled); pass x and x_hat
                there, or in any space a positive scalar away from it (the ratio is the same).
  explained_variance
                1 - mean ||x - x_hat||^2 / (mean ||x||^2 - ||mean x||^2) (R^2,
                `ExplainedVarianceCalculator`); 1 if the variance is < 1e-10 and so is the
                residual, else 0 there. Sums of x - shift keep it exact in float32 for data far
                from 0 (the same statistic as aelab/evaluators/sae.py's variance_explained).
  l0, true_l0   mean count of latents, and of true features, that fire per row (`L0Calculator`).
  dead_latents  the number of latents that never fire on the split (`DeadLatentsCalculator`).

Differences from SAELens: none in the numbers. Here `match` also returns the Hungarian partner
of each latent, so that per-latent scores may be taken against it instead (pass
`matching.matched` to `firing_counts`; -1, unmatched, is a feature that never fires); the
SynthSAEBench scores take `matching.best`. Ties in argmax go to the lowest feature index (as
torch.argmax on CPU).

Cost: the dense |cos| matrix and linear_sum_assignment on it (float64); on a 2-core CPU,
4096 x 16384 takes about 3 s and 1.5 GiB (d = 768).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from aelab.errors import AelabError

NORM_FLOOR = 1e-8       # a row's norm is clamped to this before normalising (SAELens)
MIN_INPUT_NORM = 1e-6   # rows with ||x|| at most this are left out of shrinkage (SAELens)
VARIANCE_FLOOR = 1e-10  # below this total variance, explained variance is 1 or 0 (SAELens)


@dataclasses.dataclass(frozen=True)
class Matching:
  """Latents against true features, per latent i (arrays of length n_latents):
  matched[i]      its true feature under the Hungarian matching, -1 where unmatched (only when
                  n_latents > n_features);
  cosine[i]       |cos| with matched[i], nan where unmatched;
  best[i]         argmax_j |cos(w_i, f_j)|, its best-cosine true feature;
  best_cosine[i]  that |cos|."""
  matched: np.ndarray
  cosine: np.ndarray
  best: np.ndarray
  best_cosine: np.ndarray
  n_features: int

  @property
  def n_latents(self) -> int:
    return len(self.matched)


def _unit_rows(a: np.ndarray) -> np.ndarray:
  return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), NORM_FLOOR)


def _as_rows(name: str, a, what: str) -> np.ndarray:
  a = np.asarray(a)
  if a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
    raise AelabError(f'{name} must be a numeric array [{what}, dims]; got shape '
                     f'{getattr(a, "shape", "?")} {a.dtype}: pass one row per {what[:-1]}')
  return a


def similarities(decoder: np.ndarray, truth: np.ndarray) -> np.ndarray:
  """|cos| between each decoder row and each true direction, float32 [n_latents, n_features]."""
  decoder, truth = _as_rows('decoder', decoder, 'latents'), _as_rows('truth', truth, 'features')
  if decoder.shape[1] != truth.shape[1]:
    raise AelabError(f'decoder rows have {decoder.shape[1]} dims and true directions '
                     f'{truth.shape[1]}: pass both in the same space (decoder [latents, dims], '
                     f'truth [features, dims])')
  d = _unit_rows(np.asarray(decoder, np.float64)).astype(np.float32)
  t = _unit_rows(np.asarray(truth, np.float64)).astype(np.float32)
  return np.abs(d @ t.T)


def match(decoder: np.ndarray, truth: np.ndarray) -> Matching:
  """Hungarian and best-cosine matching of decoder rows [n_latents, d] to true directions
  [n_features, d] on |cos| (see the module docstring)."""
  sim = similarities(decoder, truth)
  n_latents, n_features = sim.shape
  matched = np.full(n_latents, -1, np.int64)
  cosine = np.full(n_latents, np.nan)
  if n_latents and n_features:
    rows, cols = linear_sum_assignment(sim, maximize=True)
    matched[rows] = cols
    cosine[rows] = sim[rows, cols]
  best = sim.argmax(axis=1) if n_features else np.full(n_latents, -1, np.int64)
  best_cosine = sim[np.arange(n_latents), best] if n_features else np.full(n_latents, np.nan)
  return Matching(matched=matched, cosine=cosine, best=best.astype(np.int64),
                  best_cosine=np.asarray(best_cosine, np.float64), n_features=n_features)


def mcc(matching: Matching) -> float:
  """Mean |cos| over the Hungarian-matched pairs (min(n_latents, n_features) of them)."""
  pairs = matching.cosine[matching.matched >= 0]
  return float(pairs.mean()) if len(pairs) else 0.0


def uniqueness(matching: Matching) -> float:
  """Distinct best-cosine true features among the latents / n_latents (0 for no latents)."""
  if not matching.n_latents:
    return 0.0
  return len(np.unique(matching.best)) / matching.n_latents


def decoder_scores(matching: Matching) -> dict[str, float]:
  """The scores that need only the decoder: {'mcc', 'uniqueness'}."""
  return {'mcc': mcc(matching), 'uniqueness': uniqueness(matching)}


def firing_counts(latent_acts, true_codes, targets, x=None, x_hat=None, shift=None) -> dict:
  """Sums over one batch, to be added over batches (jax.numpy; runs inside a jitted step).

  latent_acts [B, n_latents], true_codes [B, n_features]: fire where > 0. targets [n_latents]
  int: the true feature each latent is scored against (matching.best for SynthSAEBench's
  precision / recall / F1; -1: none, a feature that never fires). x, x_hat [B, dims] (optional,
  together): the inputs and the reconstructions, for shrinkage and explained variance; `shift`
  [dims] (optional, e.g. the split's mean) is subtracted from x in the variance sums.
  Counts are int32, per latent or per batch; sums of x are float32."""
  z, codes = jnp.asarray(latent_acts), jnp.asarray(true_codes)
  targets = jnp.asarray(targets)
  if z.ndim != 2 or codes.ndim != 2 or z.shape[0] != codes.shape[0]:
    raise AelabError(f'latent_acts must be [rows, latents] and true_codes [rows, features] with '
                     f'the same rows; got {z.shape} and {codes.shape}: flatten each example first')
  if targets.shape != (z.shape[1],) or not jnp.issubdtype(targets.dtype, jnp.integer):
    raise AelabError(f'targets must be ints [{z.shape[1]}], one true feature per latent; got '
                     f'{targets.dtype} {targets.shape}: pass Matching.best (or .matched)')
  fires = z > 0
  truth_fires = (jnp.take(codes, jnp.maximum(targets, 0), axis=1) > 0) & (targets >= 0)
  sums = {'rows': jnp.asarray(z.shape[0], jnp.int32),
          'latent_fires': jnp.sum(fires, axis=0, dtype=jnp.int32),
          'truth_fires': jnp.sum(truth_fires, axis=0, dtype=jnp.int32),
          'both': jnp.sum(fires & truth_fires, axis=0, dtype=jnp.int32),
          'true_active': jnp.sum(codes > 0, dtype=jnp.int32)}
  if (x is None) != (x_hat is None):
    raise AelabError('pass x and x_hat together (or neither): shrinkage and explained variance '
                     'need both')
  if x is not None:
    sums.update(_reconstruction_sums(jnp.asarray(x), jnp.asarray(x_hat), z.shape[0], shift))
  return sums


def _reconstruction_sums(x, x_hat, rows: int, shift) -> dict:
  """Shrinkage and explained-variance sums of one batch: x, x_hat [rows, dims]."""
  if x.shape != x_hat.shape or x.ndim != 2 or x.shape[0] != rows:
    raise AelabError(f'x and x_hat must both be [{rows}, dims], one row per row of latent_acts; '
                     f'got {x.shape} and {x_hat.shape}: flatten each example first')
  x, x_hat = x.astype(jnp.float32), x_hat.astype(jnp.float32)
  norm_x = jnp.linalg.norm(x, axis=1)
  valid = norm_x > MIN_INPUT_NORM
  ratio = jnp.linalg.norm(x_hat, axis=1) / jnp.maximum(norm_x, MIN_INPUT_NORM)
  d = x if shift is None else x - jnp.asarray(shift, jnp.float32)
  return {'shrinkage_sum': jnp.sum(jnp.where(valid, ratio, 0.0)),
          'shrinkage_rows': jnp.sum(valid, dtype=jnp.int32),
          'sse': jnp.sum(jnp.square(x - x_hat)), 'sx': jnp.sum(d, axis=0),
          'sxx': jnp.sum(jnp.square(d))}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  """num / den, 0 where den is 0."""
  return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def firing_scores(sums: dict) -> dict[str, float]:
  """The scores of `firing_counts`' sums, added over the split's batches: precision, recall,
  f1, accuracy (means over all latents), l0, true_l0, dead_latents; with x and x_hat given,
  shrinkage and explained_variance."""
  missing = {'rows', 'latent_fires', 'truth_fires', 'both', 'true_active'} - set(sums)
  if missing:
    raise AelabError(f'firing_scores needs the sums of firing_counts; {sorted(missing)} missing: '
                     f'add up its output over batches and pass that')
  n = float(sums['rows'])
  fires, truth, tp = (np.asarray(sums[k], np.float64)
                      for k in ('latent_fires', 'truth_fires', 'both'))
  if not n or not len(fires):
    return {}
  fp, fn = fires - tp, truth - tp
  tn = n - tp - fp - fn
  precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
  f1 = _ratio(2 * precision * recall, precision + recall)
  out = {'precision': float(precision.mean()), 'recall': float(recall.mean()),
         'f1': float(f1.mean()), 'accuracy': float(((tp + tn) / n).mean()),
         'l0': float(fires.sum() / n), 'true_l0': float(sums['true_active']) / n,
         'dead_latents': float(np.sum(fires == 0))}
  if 'shrinkage_sum' in sums:
    valid = float(sums['shrinkage_rows'])
    out['shrinkage'] = float(sums['shrinkage_sum']) / valid if valid else 0.0
    out['explained_variance'] = _explained_variance(sums, n)
  return out


def _explained_variance(sums: dict, n: float) -> float:
  """1 - (sse / n) / (sxx / n - ||sx / n||^2), SAELens's guard below VARIANCE_FLOOR."""
  mse = float(sums['sse']) / n
  mean = np.asarray(sums['sx'], np.float64) / n
  variance = float(sums['sxx']) / n - float(np.sum(np.square(mean)))
  if variance < VARIANCE_FLOOR:
    return 1.0 if float(sums['sse']) < VARIANCE_FLOOR else 0.0
  return 1.0 - mse / variance
