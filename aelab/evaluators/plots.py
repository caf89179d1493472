"""Evaluator 'plots': PNG figures in workdir/plots from a few held-out examples.

reconstructions.png (inputs over reconstructions; for a denoiser clean / corrupted / denoised /
reconstruction of the clean input; not for a classifier), train_curves.png and val_curves.png
(every logged term), filters.png (first-layer weights, image data), latent.png (the code of
held-out examples coloured by label, PCA when wider than 2) and, for every model that can be
sampled on images (aelab/evaluators/sampling.py: a decoder, preprocessing other than
per_sample):
  samples.png      decoder means of 64 codes drawn from the model's prior, or, for a model
                   without one, from a density fitted to its training codes (ex-post: a
                   Gaussian mixture); the title says which;
  traversals.png   the up-to-10 code units of largest variance over the held-out codes, one row
                   each: the unit set to mean + t * sd for t in -3..3 (the prior's mean and sd,
                   or the held-out codes' for a model without a prior), the other units at the
                   first held-out example's code, decoded.
The examples come from `split` (the val split when it is empty). Returns no metrics.
"""

from __future__ import annotations

import functools
import pathlib

import jax
import numpy as np

from aelab import plots as draw
from aelab.errors import AelabError
from aelab.evaluators import sampling
from aelab.evaluators.context import Context, split_of
from aelab.trainer import distributed
from aelab.trainer.writers import read_jsonl

OPTIONS = dict(split='test', every=0)
HELD_OUT = 2000       # held-out examples encoded (latent.png, traversals.png)
SEED = 0              # the samples' draws (the frechet evaluator's default: one ex-post fit)
TRAVERSED = 10        # code units in traversals.png
STEPS = np.linspace(-3.0, 3.0, 9)


class Evaluator:
  LAST = True  # draws every metric logged before it

  def __init__(self, ctx: Context, split: str):
    self.ctx = ctx
    self.data = split_of(ctx.dataset, split)
    if not len(self.data):
      self.data = ctx.dataset.val

  def __call__(self, state, prep) -> dict[str, float]:
    if self.ctx.workdir is None:
      raise AelabError('the plots evaluator writes into a workdir; this run has none')
    if not len(self.data):
      return {}
    params, prep = distributed.local((state.params, prep))
    if not distributed.is_main():  # process 0 draws
      return {}
    out = pathlib.Path(self.ctx.workdir) / 'plots'
    if self.ctx.forward.model.RECONSTRUCTS:  # a classifier has no reconstructions
      self._reconstructions(out, params, prep)
    rows = read_jsonl(pathlib.Path(self.ctx.workdir) / 'metrics.jsonl')
    draw.curves(rows, out / 'train_curves.png', 'train/')
    draw.curves(rows, out / 'val_curves.png', 'val/')
    self._code_figures(out, params, prep)
    return {}

  def _reconstructions(self, out: pathlib.Path, params, prep) -> None:
    ds, fwd, x = self.ctx.dataset, self.ctx.forward, self.data.x[:10]
    outputs = jax.jit(functools.partial(fwd.outputs, train=False), static_argnames='corrupt')
    rng = jax.random.PRNGKey(0)
    clean = outputs(params, prep, {'x': x}, rng, corrupt=False)
    x_hat = np.asarray(prep.invert(clean.recon, clean.ctx))
    value_range = ds.value_range or (float(x.min()), float(x.max()))
    if ds.is_image and fwd.noise.corrupts:
      noisy = outputs(params, prep, {'x': x}, rng, corrupt=True)
      draw.image_rows([x, np.asarray(prep.invert(noisy.inputs, noisy.ctx)),
                       np.asarray(prep.invert(noisy.recon, noisy.ctx)), x_hat],
                      ['clean', 'corrupted', 'denoised', 'recon of clean'],
                      out / 'reconstructions.png', value_range)
    elif ds.is_image:
      draw.image_rows([x, x_hat], ['input', 'recon'], out / 'reconstructions.png', value_range)
    else:
      draw.vector_rows(x[:4], x_hat[:4], out / 'reconstructions.png',
                       title=f'{ds.name}: input vs reconstruction (input units)')

  def _code_figures(self, out: pathlib.Path, params, prep) -> None:
    ds, fwd, config = self.ctx.dataset, self.ctx.forward, self.ctx.config
    title = f'{config.model.name} on {ds.name}'
    filters = fwd.model.filters(jax.device_get(params))
    if filters is not None:
      draw.filters(np.asarray(filters), out / 'filters.png', f'{title}: first-layer filters')
    sampled = ds.is_image and sampling.unavailable(self.ctx, prep.mode) is None
    if self.data.y is None and not sampled:
      return
    xs = self.data.x[:HELD_OUT]
    code = sampling.encode(self.ctx, params, prep, xs)
    if self.data.y is not None:
      names = ds.source.get('label_names') if isinstance(ds.source, dict) else None
      draw.latent_scatter(code, self.data.y[:HELD_OUT], out / 'latent.png', names,
                          f'{title}: code of {len(xs)} held-out examples')
    if sampled:
      z, source = sampling.codes(self.ctx, params, prep, 64, SEED)
      draw.image_grid(sampling.decode(self.ctx, params, prep, z), out / 'samples.png',
                      ds.value_range or (0.0, 1.0),
                      f'{title}: decoder means of codes drawn from\nthe {source}')
      self._traversals(out / 'traversals.png', params, prep, code, title)

  def _traversals(self, path: pathlib.Path, params, prep, code: np.ndarray, title: str) -> None:
    """Up to TRAVERSED code dimensions of the largest held-out variance, each varied over
    centre + t * sd (t in STEPS; the prior's mean and sd, else the held-out codes') with the
    others at the first held-out example's code, decoded: one row per dimension."""
    flat = code.reshape(len(code), -1)
    prior = self.ctx.forward.prior_codes(params, jax.random.PRNGKey(SEED), HELD_OUT)
    ref = flat if prior is None else np.asarray(prior).reshape(HELD_OUT, -1)
    centre, sd = ref.mean(0), ref.std(0)
    variance = flat.var(0)
    dims = [int(d) for d in np.argsort(-variance, kind='stable')[:TRAVERSED] if variance[d] > 0]
    if not dims:
      return
    grid = np.repeat(flat[:1], len(dims) * len(STEPS), axis=0).reshape(len(dims), len(STEPS), -1)
    for row, d in enumerate(dims):
      grid[row, :, d] = centre[d] + STEPS * sd[d]
    images = sampling.decode(self.ctx, params, prep, grid.reshape(-1, *code.shape[1:]))
    ds, what = self.ctx.dataset, 'the prior' if prior is not None else 'the held-out codes'
    draw.traversals(images.reshape(len(dims), len(STEPS), *images.shape[1:]),
                    [f'z{d}' for d in dims], STEPS, path, ds.value_range or (0.0, 1.0),
                    f'{title}: traversals of the {len(dims)} code units of largest held-out '
                    'variance', f't: the unit set to mean + t * sd of {what} (the others: one '
                    'held-out example\'s code)')
