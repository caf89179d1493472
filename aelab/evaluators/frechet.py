"""Evaluator 'frechet': sample quality in the features of a classifier aelab trains itself on the
dataset (aelab/evaluators/feature_net.py): Fréchet distances, and precision and recall of the
samples (Kynkäänniemi et al. 2019). NOT the Inception FID: see docs/generative.md.

Metrics (logged as <split>/<name>), with f the feature net's last hidden layer on rows in input
units, `samples` model samples and the split's first `samples` examples:
  fd_samples         FD(f(samples), f(split)), FD = |m1 - m2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))
                     of the features' means and covariances (float64);
  fd_recon           FD(f(reconstructions of the split), f(split));
  fd_train           FD(f(training rows), f(split)): two sets of real data, the value a perfect
                     sampler approaches at this sample size (FD is biased upwards by finite n);
  sample_precision   the fraction of samples inside the real data's k-NN manifold (the union of
                     balls around each example reaching its k-th nearest neighbour, k =
                     `neighbours`): how many samples look real;
  sample_recall      the fraction of examples inside the samples' k-NN manifold: how much of the
                     data the samples cover;
  feature_accuracy   the feature net's test accuracy;
  samples_from_prior 1 when the samples are decoded draws from the model's own prior, 0 when
                     from a density fitted to its training codes (ex-post; evaluators/sampling.py).

With a workdir, frechet_<split>.json holds the metrics, the step and what they were measured
with: the sampler (its phrase), the feature net's directory, recipe, accuracy and training time.
The feature net needs the dataset's labels, and the model a decoder (not a classifier) and
preprocessing other than per_sample (one-line errors when the evaluator is built).
"""

from __future__ import annotations

import functools
import pathlib

import jax
import numpy as np

from aelab.config import checks
from aelab.errors import AelabError
from aelab.evaluators import feature_net, sampling
from aelab.evaluators.context import Context, split_of
from aelab.files import write_json
from aelab.trainer import distributed

OPTIONS = dict(
    split='test', every=0,
    samples=10000,               # model samples, and examples of the split (its first ones)
    batch_size=500,              # rows per jitted call (decoding, reconstruction, features)
    neighbours=3,                # k of the k-NN manifolds (precision and recall)
    seed=0,                      # the samples' draws (and the ex-post density's fit)
    feature_hidden=(256, 128),   # the feature net's widths (its recipe; a new net per recipe)
    feature_epochs=10,           # the feature net's training epochs
)
CHUNK_BYTES = 64 << 20           # distance blocks of the k-NN manifolds (float64)


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean [d] and covariance [d, d] (n - 1 in the denominator) in float64."""
  f = np.asarray(features, np.float64).reshape(len(features), -1)
  if len(f) < 2:
    raise AelabError(f'a Fréchet distance needs at least 2 rows of features; got {len(f)}')
  return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh((s + s.T) / 2)
  return (v * np.sqrt(np.maximum(w, 0.0))) @ v.T


def frechet_distance(mu1, s1, mu2, s2) -> float:
  """|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) in float64, the trace of the square root as
  that of the symmetric (S1^(1/2) S2 S1^(1/2))^(1/2) (real eigenvalues; those below 0 by
  rounding count as 0). Clipped at 0 (rounding for two equal sets); NaN for non-finite
  statistics."""
  mu1, mu2, s1, s2 = (np.asarray(a, np.float64) for a in (mu1, mu2, s1, s2))
  if not all(np.isfinite(a).all() for a in (mu1, mu2, s1, s2)):
    return float('nan')  # a model that outputs NaN: the figure says so
  r = _psd_sqrt(s1)
  middle = r @ s2 @ r
  cross = np.sqrt(np.maximum(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0)).sum()
  diff = mu1 - mu2
  return max(float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * cross), 0.0)


def fd(a: np.ndarray, b: np.ndarray) -> float:
  """The Fréchet distance of two sets of feature rows."""
  return frechet_distance(*statistics(a), *statistics(b))


def _sq_distances(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray) -> np.ndarray:
  return np.maximum((a * a).sum(1)[:, None] - 2 * a @ b.T + b_sq[None, :], 0.0)


def _chunks(rows: int, other: int):
  step = max(1, CHUNK_BYTES // (8 * max(other, 1)))
  return range(0, rows, step), step


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
  """Squared distance [N] from each row to its k-th nearest other row, in chunks."""
  if len(x) <= k:
    raise AelabError(f'a k-NN manifold with k = {k} needs more than {k} rows; got {len(x)}')
  x_sq, out = (x * x).sum(1), np.empty(len(x))
  starts, step = _chunks(len(x), len(x))
  for i in starts:
    d = _sq_distances(x[i:i + step], x, x_sq)
    out[i:i + step] = np.partition(d, k, axis=1)[:, k]  # index 0: the row itself
  return out


def covered(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
  """bool [P]: each point lies within some centre's ball (squared radii)."""
  c_sq, out = (centres * centres).sum(1), np.empty(len(points), bool)
  starts, step = _chunks(len(points), len(centres))
  for i in starts:
    out[i:i + step] = (_sq_distances(points[i:i + step], centres, c_sq) <= radii[None]).any(1)
  return out


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
  """(precision, recall) of `fake` against `real` feature rows with k-NN manifolds
  (Kynkäänniemi et al. 2019)."""
  real, fake = (np.asarray(a, np.float64).reshape(len(a), -1) for a in (real, fake))
  precision = covered(fake, real, knn_radii(real, k)).mean()
  recall = covered(real, fake, knn_radii(fake, k)).mean()
  return float(precision), float(recall)


@functools.lru_cache(maxsize=None)
def _reconstruct_fn(forward):
  @jax.jit
  def reconstruct(params, prep, stats, x):
    p = forward.outputs(params, prep, {'x': x}, jax.random.PRNGKey(0), train=False,
                        corrupt=False, stats=stats)
    return prep.invert(p.recon, p.ctx)
  return reconstruct


class Evaluator:
  def __init__(self, ctx: Context, split: str, samples: int, batch_size: int, neighbours: int,
               seed: int, feature_hidden, feature_epochs: int):
    self.samples = checks.integer(samples, 'the frechet evaluator\'s samples', low=2,
                                  high=checks.INT32_MAX)
    self.k = checks.integer(neighbours, 'the frechet evaluator\'s neighbours', low=1,
                            high=self.samples - 1)
    self.seed = checks.integer(seed, 'the frechet evaluator\'s seed', low=0,
                               high=checks.UINT32_MAX)
    self.batch_size = batch_size
    why = sampling.unavailable(ctx, ctx.config.preprocessing)
    if why:
      raise AelabError(f'the frechet evaluator measures a model\'s samples, and {why}; remove '
                       'this evaluator or set its every to -1')
    if ctx.dataset.train.y is None:
      raise AelabError(f'the frechet evaluator\'s feature net is a classifier trained on the '
                       f'labels of dataset {ctx.dataset.name!r}, whose training split has none')
    self.recipe = feature_net.recipe(feature_hidden, feature_epochs)
    self.ctx, self.split, self.data = ctx, split, split_of(ctx.dataset, split)
    self.progress = bool(ctx.config.get('train', {}).get('progress', False))
    self.net: feature_net.FeatureNet | None = None

  def feature_net(self) -> feature_net.FeatureNet | None:
    """The feature net, from the cache or trained on first use (None: a stop request
    interrupted its training)."""
    if self.net is None:
      same = int(self.ctx.config.get('seed', -1)) == self.recipe['seed']
      self.net = feature_net.get(self.ctx.config.dataset, self.recipe,
                                 dataset=self.ctx.dataset if same else None,
                                 progress=self.progress and distributed.is_main())
    return self.net

  def __call__(self, state, prep) -> dict[str, float]:
    """See the module docstring."""
    if not len(self.data):
      return {}
    params, prep = distributed.local((state.params, prep))
    stats = distributed.local(state.stats) if state.stats else {}
    net, progress = self.feature_net(), self.progress and distributed.is_main()
    if net is None:  # stopped while training it: the run stops, and evaluates when resumed
      return {}
    real = self.data.x[:self.samples]
    feats = lambda x: net.features(x, self.batch_size)  # noqa: E731
    f_real, f_train = feats(real), feats(self.ctx.dataset.train.x[:self.samples])
    recon_fn = _reconstruct_fn(self.ctx.forward)
    recon = sampling.batched(lambda x: recon_fn(params, prep, stats, x), real, self.batch_size,
                             'reconstruct', progress)
    z, source = sampling.codes(self.ctx, params, prep, self.samples, self.seed, progress)
    f_fake = feats(sampling.decode(self.ctx, params, prep, z, progress))
    precision, recall = precision_recall(f_real, f_fake, self.k)
    metrics = {'fd_samples': fd(f_fake, f_real), 'fd_recon': fd(feats(recon), f_real),
               'fd_train': fd(f_train, f_real), 'sample_precision': precision,
               'sample_recall': recall, 'feature_accuracy': net.accuracy,
               'samples_from_prior': float(source == 'prior')}
    if self.ctx.workdir is not None and distributed.is_main():
      self._write(metrics, source, net, int(jax.device_get(state.step)), len(real))
    return metrics

  def _write(self, metrics: dict, source: str, net: feature_net.FeatureNet, step: int,
             examples: int) -> None:
    write_json(pathlib.Path(self.ctx.workdir) / f'frechet_{self.split}.json', {
        'split': self.split, 'step': step, **metrics, 'sampler': source,
        'samples': self.samples, 'examples': examples, 'neighbours': self.k,
        'seed': self.seed, 'feature_net': {
            'directory': str(net.directory), 'recipe': self.recipe, 'accuracy': net.accuracy,
            'train_s': net.train_s, 'trained_now': net.trained_now},
        'note': 'features of aelab\'s own classifier, not Inception: not comparable to '
                'published FIDs (docs/generative.md)'})
