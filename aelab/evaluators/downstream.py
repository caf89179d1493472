"""Evaluator 'downstream': how much of a trained run's own metric survives when the layer this
model was trained on (dataset `activations`) is replaced by the model's reconstruction of it.

Metrics (logged as <split>/<name>), from aelab.analysis.splice.fraction_recovered on the raw rows
of `split` of the trained run's own dataset (its config, its seed), with the layer's activations
h replaced by reconstruct(h) = this model's reconstruction of h in input units:
  fraction_recovered        (zero_ablated - spliced) / (zero_ablated - original): 1 as good as
                            the layer itself, 0 as bad as zeroing it (NaN when zeroing it changes
                            nothing);
  downstream_original       the run's metric with the layer as it is (a dense autoencoder: its
                            reconstruction MSE in its preprocessed space; a classifier: its
                            softmax cross-entropy);
  downstream_zero_ablated   the same with the layer's activations zeroed;
  downstream_spliced        the same with them replaced by reconstruct(h);
  downstream_accuracy_original, downstream_accuracy_zero_ablated, downstream_accuracy_spliced
                            (a classifier run) its accuracies in the three cases.

The dataset must be the `activations` source (an error when the evaluator is built); the trained
run is loaded from the source's workdir at the source's checkpoint step.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from aelab.analysis import runs, splice
from aelab.errors import AelabError
from aelab.evaluators.context import Context, split_of
from aelab.trainer import distributed

OPTIONS = dict(split='test', every=0, batch_size=1000)  # a run's metric, its layer spliced


@functools.lru_cache(maxsize=None)
def _reconstruct_fn(forward):
  """One jitted reconstruction per forward pass: activations h -> the model's output, inverted
  to input units."""

  @jax.jit
  def reconstruct(params, prep, stats, h):
    p = forward.outputs(params, prep, {'x': h}, jax.random.PRNGKey(0), train=False, stats=stats)
    return prep.invert(p.recon, p.ctx)

  return reconstruct


class Evaluator:
  def __init__(self, ctx: Context, split: str, batch_size: int):
    source = ctx.dataset.source if isinstance(ctx.dataset.source, dict) else {}
    if 'run' not in source or 'layer' not in source:
      raise AelabError(f"the downstream evaluator needs a model trained on a run's activations "
                       f"(dataset.name = 'activations'); this dataset is {ctx.dataset.name!r}")
    if not ctx.forward.model.RECONSTRUCTS:
      raise AelabError(f'the downstream evaluator needs a model that reconstructs the '
                       f'activations; model {ctx.config.model.name!r} does not')
    split_of(ctx.dataset, split)  # a bad split name: the usual one-line error
    self.ctx, self.batch_size, self.layer = ctx, batch_size, source['layer']
    self.trained = runs.load(source['run'], step=int(source['step']) or None)
    if not hasattr(self.trained.model, 'from_layer'):
      raise AelabError(f'the downstream evaluator continues the trained run from its layer; '
                       f'{self.trained.workdir} holds a {self.trained.config.model.name!r} '
                       'model, which cannot')
    self.classifier = self.trained.model.classes() is not None
    rows = split_of(self.trained.dataset, split)
    self.x, self.y = rows.x, rows.y
    if self.classifier and len(self.x) and self.y is None:
      raise AelabError(f'the downstream evaluator needs labels to score the classifier in '
                       f'{self.trained.workdir}, but its {split} split has none')
    self.step = _reconstruct_fn(ctx.forward)

  def reconstruction(self, state, prep):
    """reconstruct(h): this state's reconstruction of activations h [B, width], in input units
    (numpy)."""
    params, prep = distributed.local((state.params, prep))
    stats = distributed.local(state.stats) if state.stats else {}
    return lambda h: np.asarray(self.step(params, prep, stats, h))

  def __call__(self, state, prep) -> dict[str, float]:
    if not len(self.x):
      return {}
    out = splice.fraction_recovered(self.trained, self.layer, self.reconstruction(state, prep),
                                    self.x, self.y if self.classifier else None,
                                    batch_size=self.batch_size)
    metrics = {'fraction_recovered': float(out['fraction_recovered'])}
    for case in ('original', 'zero_ablated', 'spliced'):
      metrics[f'downstream_{case}'] = float(out[case])
      if self.classifier:
        metrics[f'downstream_accuracy_{case}'] = float(out[f'accuracy_{case}'])
    return metrics
