"""Evaluators: what runs on held-out data, chosen in the config, one small module per type.

    config.evals.val = dict(type='reconstruction', split='val', every=1000, batch_size=1000)
    config.evals.iwae = dict(type='iwae', split='test', every=0, samples=5000, ...)

`every`: N > 0 runs it every N train steps and at the end; 0 only at the end; -1 never. Each
built evaluator is called as `evaluator(state, prep) -> {metric: value}`; the trainer logs the
metrics as `<split>/<metric>` and gathers them by split in summary.json. Evaluators run in name
order, plots last (they draw every metric logged before them). To add a type: a module here with a class taking
(ctx, **fields), its defaults in aelab/config/defaults.py EVALUATORS, and a line in TYPES.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from aelab.config import check_choice, check_fields, defaults
from aelab.errors import AelabError
from aelab.evaluators import classification, downstream, iwae, pca, plots, reconstruction, sae
from aelab.evaluators.context import Context, split_of

TYPES = {'reconstruction': reconstruction.Reconstruction, 'iwae': iwae.Iwae, 'plots': plots.Plots,
         'pca': pca.Pca, 'classification': classification.Classification, 'sae': sae.Sae,
         'downstream': downstream.Downstream}

__all__ = ['Context', 'Evaluator', 'TYPES', 'build', 'split_of']


@dataclasses.dataclass(frozen=True)
class Evaluator:
  name: str
  split: str
  every: int
  run: Callable   # run(state, prep) -> {metric: value}

  def due(self, step: int, final: bool) -> bool:
    return self.every >= 0 and (final or (self.every > 0 and step % self.every == 0))


def build(evals, ctx: Context) -> list[Evaluator]:
  """Validates `config.evals` and builds each evaluator (AelabError naming the bad field)."""
  out = []
  for name, cfg in (evals.to_dict() if hasattr(evals, 'to_dict') else dict(evals)).items():
    cfg = cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg
    if not isinstance(cfg, dict) or 'type' not in cfg:
      raise AelabError(f'evals.{name} must be a dict with a type, e.g. '
                       f"evals.{name} = dict(type='reconstruction', split='val')")
    check_choice(cfg['type'], tuple(TYPES), f'evaluator type (evals.{name}.type)')
    fields = {**defaults.EVALUATORS[cfg['type']], **cfg}
    check_fields(cfg, ('type', *defaults.EVALUATORS[cfg['type']]), f'evals.{name}')
    every = fields.pop('every')
    if isinstance(every, bool) or not isinstance(every, int) or every < -1:
      raise AelabError(f'evals.{name}.every = {every!r}; give N > 0 (every N steps and at the '
                       'end), 0 (only at the end) or -1 (never)')
    if 'batch_size' in fields and (not isinstance(fields['batch_size'], int)
                                   or fields['batch_size'] <= 0):
      raise AelabError(f'evals.{name}.batch_size = {fields["batch_size"]!r}; it must be a '
                       'positive integer')
    del fields['type']
    if every == -1:  # off: not even built (an iwae evaluator off on a non-VAE is fine)
      continue
    run = TYPES[cfg['type']](ctx, **fields)
    out.append(Evaluator(name=name, split=fields['split'], every=every, run=run))
  return sorted(out, key=lambda ev: (isinstance(ev.run, plots.Plots), ev.name))
