"""Evaluators: what runs on held-out data, chosen in the config, one small module per type.

    config.evals.val = dict(type='reconstruction', split='val', every=1000, batch_size=1000)
    config.evals.iwae = dict(type='iwae', split='test', every=0, samples=5000, ...)

`every`: N > 0 runs it every N train steps and at the end; 0 only at the end; -1 never. Each
built evaluator is called as `evaluator(state, prep) -> {metric: value}`; the trainer logs the
metrics as `<split>/<metric>` and gathers them by split in summary.json. Evaluators run in name
order, those marked LAST (plots: they draw every metric logged before them) after the others.
A type is a module here, aelab/evaluators/<type>.py, with OPTIONS (its fields and defaults, read
by aelab.config.catalog) and a class `Evaluator(ctx, **fields)` (the Context, and the type's
fields, `split` included, `type` and `every` taken out), found by its module's name.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

from aelab.config import catalog, checks
from aelab.errors import AelabError
from aelab.evaluators.context import Context, split_of

__all__ = ['Context', 'Evaluator', 'build', 'split_of']


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
    entry = catalog.entry('evaluator', cfg['type'])
    catalog.check_options('evaluator', entry.name, {k: v for k, v in cfg.items() if k != 'type'},
                          f'evals.{name}')
    fields = {**entry.options, **cfg}
    every = checks.integer(fields.pop('every'), f'evals.{name}.every', low=-1,
                           hint=' (N > 0: every N steps and at the end; 0: only at the end; -1: '
                                'never)')
    if 'batch_size' in fields:
      checks.integer(fields['batch_size'], f'evals.{name}.batch_size', low=1,
                     high=checks.INT32_MAX)
    del fields['type']
    if every == -1:  # off: not even built (an iwae evaluator off on a non-VAE is fine)
      continue
    kind = importlib.import_module(entry.module).Evaluator
    out.append(Evaluator(name=name, split=fields['split'], every=every, run=kind(ctx, **fields)))
  return sorted(out, key=lambda ev: (getattr(ev.run, 'LAST', False), ev.name))
