"""Evaluator 'plots': PNG figures in workdir/plots from a few held-out examples.

reconstructions.png (inputs over reconstructions; for a denoiser clean / corrupted / denoised /
reconstruction of the clean input; not for a classifier), train_curves.png and val_curves.png (every logged term),
filters.png (first-layer weights, image data), latent.png (the code of held-out examples
coloured by label, PCA when wider than 2) and, for a model with a prior (a VAE) on images,
samples.png (decoder means of codes drawn from the prior). The examples come from `split` (the val split when it is empty). Returns no metrics.
"""

from __future__ import annotations

import functools
import pathlib

import jax
import numpy as np

from aelab import plots as draw
from aelab.errors import AelabError
from aelab.evaluators.context import Context, split_of
from aelab.trainer import distributed
from aelab.trainer.writers import read_jsonl

OPTIONS = dict(split='test', every=0)


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
    if self.data.y is not None:
      xs = self.data.x[:2000]
      code = jax.jit(fwd.encode)(params, prep, xs)
      names = ds.source.get('label_names') if isinstance(ds.source, dict) else None
      draw.latent_scatter(np.asarray(code), self.data.y[:2000], out / 'latent.png', names,
                          f'{title}: code of {len(xs)} held-out examples')
    z = fwd.model.prior_codes(jax.random.PRNGKey(1), 64)
    if z is not None and ds.is_image and prep.mode != 'per_sample':
      samples = jax.jit(fwd.decode)(params, prep, z)
      draw.image_grid(np.asarray(samples), out / 'samples.png', ds.value_range or (0.0, 1.0),
                      f'{title}: decoder means of codes from the prior')
