"""Seeds in one program (`--seeds_together`): points that differ only in `seed` train as one
process, `python -m aelab.sweep ... --group=i,j,k`, which calls
`aelab.trainer.train.train_together(configs, workdirs)`; each point's directory
ends exactly as a lone run's would (config.json, checkpoints/, metrics.jsonl, summary.json).
"""

from __future__ import annotations

import copy
import pathlib
import sys
from collections.abc import Sequence


from aelab.config import overrides
from aelab.errors import AelabError
from aelab.sweep.points import Point

SEED = 'seed'


def plan(points: Sequence[Point], together: bool, size: int) -> list[list[Point]]:
  """The jobs: one point each, or (together) the points equal but for their seed, in groups of
  at most `size`, in the order of their first point."""
  if not together:
    return [[p] for p in points]
  if size < 1:
    raise AelabError(f'--group_size={size}; give at least 1')
  by_rest: dict[str, list[Point]] = {}
  for p in points:
    rest = repr(sorted((k, repr(v)) for k, v in p.overrides.items() if k != SEED))
    by_rest.setdefault(rest, []).append(p)
  return [members[i:i + size] for members in by_rest.values()
          for i in range(0, len(members), size)]


def parse(text: str, points: Sequence[Point]) -> list[Point]:
  """`--group=i,j,k` as the sweep's points i, j, k."""
  try:
    indices = [int(t) for t in text.split(',')]
  except ValueError:
    raise AelabError(f'--group={text!r}: give point indices, e.g. --group=0,3,6') from None
  bad = [i for i in indices if not 0 <= i < len(points)]
  if bad:
    raise AelabError(f'--group={text!r}: no point {bad[0]}; the sweep has {len(points)}')
  return [points[i] for i in indices]


def configs(config, group: Sequence[Point]) -> list:
  """Each point's config: the base config (`config`, or `config(variant)`: points.Variants)
  with the point's arguments, parsed as a run would."""
  out = []
  for point in group:
    cfg = copy.deepcopy(config(point.variant) if callable(config) else config)
    changes = [arg[len('--config.'):].split('=', 1) for arg in point.args]
    overrides.apply_args(cfg, [(path, text) for path, text in changes])
    out.append(cfg)
  return out


def run(config, group: Sequence[Point], workdir: pathlib.Path,
        how: str = 'map') -> int:
  """Trains the group in this process; the exit code (0, or 75 when a stop request came)."""
  from absl import logging

  from aelab.trainer import compile_cache, signals, train
  compile_cache.enable()
  with signals.catch():
    logging.set_verbosity(logging.WARNING)
    dirs = [workdir / p.name for p in group]
    summaries = train.train_together(configs(config, group), dirs, how=how)
  stopped = False
  for point, summary in zip(group, summaries):
    if 'interrupted' in summary:
      stopped = True
      print(f'aelab: point {point.index} ({point.name}) stopped at step {summary.get("step")}',
            file=sys.stderr, flush=True)
    else:
      print(f'aelab: point {point.index} ({point.name}) done, {summary.get("step")} steps',
            flush=True)
  return signals.INTERRUPTED if stopped else 0
