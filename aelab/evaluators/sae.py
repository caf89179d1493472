"""Evaluator 'sae': what a sparse dictionary (aelab/models/sae.py) is judged by, on one split.

Metrics (logged as <split>/<name>):
  l0                  active latents per example (f > 0), averaged;
  variance_explained  1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2, in the model's space;
  dead_fraction       latents silent for model.dead_steps train steps (the state's stats);
  dense_fraction      latents active on more than 10% of the split's examples;
  never_fired         latents inactive on every example of the split;
  recovered, mean_max_cosine  (a dataset with ground truth, e.g. toy_features) the fraction of
                      the true features that some decoder row matches with cosine similarity
                      > 0.9, and the mean over true features of their best cosine similarity;
  mcc, uniqueness     (ground truth) SynthSAEBench's decoder scores: the mean |cos| of the
                      Hungarian matching of decoder rows to true features, and the fraction of
                      distinct best-matching features (aelab/evaluators/sae_truth.py);
  precision, recall, f1, shrinkage  (where the split has its rows' true codes, as the
                      synthetic sources give) each latent as a detector of its best-matching
                      true feature, averaged over all latents; shrinkage the mean ||x_hat|| / ||x||.
With a workdir, process 0 draws plots/latent_density.png: the histogram of log10 of each
latent's firing frequency on the split (dead latents at the left edge).
"""

from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from aelab import plots
from aelab.errors import AelabError
from aelab.evaluators import sae_truth
from aelab.evaluators.context import Context, run_batches, split_of
from aelab.trainer import distributed, sharding

OPTIONS = dict(split='test', every=0, batch_size=1000)  # L0, variance explained, dead and dense
                                                        # latents, ground-truth recovery
DENSE = 0.1       # a latent firing on more than this fraction of inputs is dense
RECOVERED = 0.9   # cosine similarity that counts a true feature as recovered


@functools.lru_cache(maxsize=None)
def _eval_step(forward):

  @jax.jit
  def step(params, prep, batch, shift, stats, targets, index=0):
    """`shift`: about the split's mean; sums of x - shift keep the variance exact in float32
    when activations sit far from 0 (a residual stream's offset). `targets`: each latent's
    best-matching true feature, where the batch has its true codes (else None)."""
    rng = jax.random.fold_in(jax.random.PRNGKey(0), index)
    p = forward.outputs(params, prep, batch, rng, train=False, stats=stats)
    x, recon, f = (a.reshape(a.shape[0], -1) for a in (p.z, p.recon, p.aux['code']))
    fired = f > 0
    d = x - shift
    sums = {'sse': jnp.sum(jnp.square(recon - x)), 'sx': jnp.sum(d, axis=0),
            'sxx': jnp.sum(jnp.square(d)), 'fired': jnp.sum(fired, axis=0, dtype=jnp.int32)}
    if targets is not None:
      counts = sae_truth.firing_counts(f, batch['truth_codes'], targets, x, recon)
      sums.update({f'truth/{k}': v for k, v in counts.items()})
    return {'l0': jnp.mean(jnp.sum(fired, axis=-1))}, sums

  return step


def matches(decoder: np.ndarray, truth: np.ndarray) -> np.ndarray:
  """For each true feature (row of `truth`), its best cosine similarity with a decoder row."""
  d = decoder / np.maximum(np.linalg.norm(decoder, axis=1, keepdims=True), 1e-12)
  t = truth / np.maximum(np.linalg.norm(truth, axis=1, keepdims=True), 1e-12)
  return (t @ d.T).max(axis=1)


class Evaluator:
  def __init__(self, ctx: Context, split: str, batch_size: int):
    self.dictionary = ctx.forward.model.dictionary()
    if self.dictionary is None:
      raise AelabError(f'the sae evaluator needs a sparse dictionary (e.g. model sae); '
                       f'model {ctx.config.model.name!r} is not one')
    self.ctx, self.batch_size, self.split = ctx, batch_size, split
    self.data = split_of(ctx.dataset, split)
    self.step = _eval_step(ctx.forward)
    self.truth, self.shift = ctx.dataset.truth, None

  def __call__(self, state, prep) -> dict[str, float]:
    if not len(self.data):
      return {}
    if self.shift is None:  # the preprocessed split's mean (of its first rows), computed once
      z = np.asarray(prep.apply(self.data.x[:20000])[0], np.float64)
      self.shift = np.mean(z.reshape(len(z), -1), axis=0).astype(np.float32)
    decoder, matching, targets = None, None, None
    if self.truth is not None:
      decoder = np.asarray(self.ctx.forward.model.directions(distributed.local(state.params)),
                           np.float64)
      matching = sae_truth.match(decoder, self.truth)
      if self.data.truth_codes is not None:
        targets = sharding.put(matching.best.astype(np.int32), sharding.replicated(self.ctx.mesh))
    means, t = run_batches(self.step, state.params, prep, self.data, self.batch_size,
                           self.ctx.mesh, self.shift, state.stats, targets,
                           truth=targets is not None)
    n = len(self.data)
    sst = float(t['sxx']) - float(np.sum(np.square(np.asarray(t['sx'], np.float64)))) / n
    frequency = np.asarray(t['fired'], np.float64) / n
    out = {'l0': means['l0'], 'variance_explained': 1.0 - float(t['sse']) / max(sst, 1e-30),
           'dense_fraction': float(np.mean(frequency > DENSE)),
           'never_fired': float(np.mean(frequency == 0))}
    if 'since_fired' in state.stats:
      since = np.asarray(distributed.local(state.stats['since_fired']))
      out['dead_fraction'] = float(np.mean(since >= self.dictionary.dead_steps))
    if matching is not None:
      best = matches(decoder, self.truth)
      out.update(recovered=float(np.mean(best > RECOVERED)), mean_max_cosine=float(best.mean()),
                 **sae_truth.decoder_scores(matching))
    if targets is not None:
      scores = sae_truth.firing_scores({k[len('truth/'):]: v for k, v in t.items()
                                        if k.startswith('truth/')})
      out.update({k: scores[k] for k in ('precision', 'recall', 'f1', 'shrinkage')})
    if self.ctx.workdir is not None and distributed.is_main():
      self._draw(frequency, int(jax.device_get(state.step)))
    return out

  def _draw(self, frequency: np.ndarray, step: int) -> None:
    plots.latent_density(frequency, pathlib.Path(self.ctx.workdir) / 'plots' / 'latent_density.png',
                         floor=0.5 / len(self.data), dense=DENSE,
                         xlabel=f'log10 firing frequency on {self.split} (left edge: never)',
                         title=f'latent density, step {step}')
