"""The summary of a sweep, rebuilt from the run directories alone: DIR/results.csv, results.md and
plots/ (aelab/sweep/figures.py).

One row per point: `index`, `name`, each swept field in its own column (the CSV names it by its
path and writes the value as `--config.a.b=` takes it; the markdown table by its short label),
`status` (done, failed, interrupted, running, pending: aelab/sweep/layout.py), every final metric
of the point's summary.json flattened as `val/mse`, `test/bce`, ... (val first, then test, then
any other split), `wall_time_s` (of the run's last invocation) and `train_steps_per_s`; and, for a
failed point, its one-line `error`. Empty cells where a point has no value.

When the sweep has a `seed` axis, results.md also has a table over seeds: one row per setting
(the points equal but for their seed), each metric's mean ± standard deviation over its finished
seeds with their range, `mean ± std [min, max]` (and their number); the metrics of `--metric`
when it names several, else every one.
"""

from __future__ import annotations

import csv
import io
import numbers
import pathlib
from collections.abc import Sequence
from typing import Any

from aelab import files
from aelab.sweep import layout, naming, points as points_lib
from aelab.sweep.points import Point

_SPLITS = ('val', 'test')
SEED = 'seed'
TIMING = ('wall_time_s', 'train_steps_per_s')


def rows(points: Sequence[Point], workdir: pathlib.Path) -> tuple[list[str], list[dict]]:
  """(metric columns, one dict per point: index, name, overrides, status, metrics, timing,
  error)."""
  out = []
  for point in points:
    d = workdir / point.name
    summary = layout.summary(d) or {}
    row = {'index': point.index, 'name': point.name, 'overrides': point.overrides,
           'status': layout.status(d), 'metrics': flatten(summary),
           **{k: summary.get(k) for k in TIMING}, 'error': layout.error(d)}
    out.append(row)
  return _metric_columns(out), out


def flatten(summary: dict) -> dict[str, float]:
  """{'test': {'mse': 0.1}} -> {'test/mse': 0.1} (numbers only)."""
  return {f'{split}/{k}': v for split, group in summary.items() if isinstance(group, dict)
          for k, v in group.items() if _number(v)}


def _metric_columns(table: list[dict]) -> list[str]:
  names = {k for row in table for k in row['metrics']}
  order = lambda k: (_SPLITS.index(k.split('/')[0]) if k.split('/')[0] in _SPLITS  # noqa: E731
                     else len(_SPLITS), k)
  return sorted(names, key=order)


def write(points: Sequence[Point], workdir: pathlib.Path, title: str,
          chosen: Sequence[str] = ()) -> dict[str, Any]:
  """Writes results.csv and results.md; returns {'columns', 'rows', 'counts'}. `chosen`: the
  metrics of the table over seeds (all when fewer than two)."""
  metrics, table = rows(points, workdir)
  fields = naming.fields([p.overrides for p in points])
  files.write_text(workdir / 'results.csv', to_csv(table, fields, metrics))
  counts = {s: sum(r['status'] == s for r in table) for s in layout.STATUSES}
  text = to_markdown(table, fields, metrics, counts, title)
  if SEED in fields:
    shown = [m for m in chosen if m in metrics] if len(chosen) > 1 else metrics
    text += over_seeds(table, fields, shown)
  files.write_text(workdir / 'results.md', text)
  return {'metrics': metrics, 'rows': table, 'fields': fields, 'counts': counts}


def over_seeds(table: list[dict], fields: list[str], metrics: list[str]) -> str:
  """The markdown table of each setting's mean ± std [min, max] over its finished seeds."""
  rest = [f for f in fields if f != SEED]
  settings: dict[tuple, list[dict]] = {}
  for row in table:
    key = tuple(naming.value_text(row['overrides'][f]) if f in row['overrides'] else ''
                for f in rest)
    settings.setdefault(key, []).append(row)
  labels = naming.labels(fields)
  header = [*(labels[f] for f in rest), 'seeds', *metrics, 'wall time (s)', 'steps/s']
  lines = ['', '## Over seeds (mean ± standard deviation [min, max])', '',
           '| ' + ' | '.join(header) + ' |',
           '| ' + ' | '.join('---' if i < len(rest) else '---:' for i in range(len(header)))
           + ' |']
  for key, members in settings.items():
    done = [r for r in members if r['status'] == 'done']
    cells = [*key, str(len(done)),
             *(_spread([r['metrics'].get(m) for r in done]) for m in metrics),
             _spread([r['wall_time_s'] for r in done], '.1f'),
             _spread([r['train_steps_per_s'] for r in done], '.1f')]
    lines.append('| ' + ' | '.join(c.replace('|', '\\|') for c in cells) + ' |')
  return '\n'.join(lines) + '\n'


def _spread(values: list, spec: str = '.4g') -> str:
  """'mean ± std [min, max]' of the numbers among `values` (the sample std), the value alone for
  one."""
  numbers_ = [float(v) for v in values if _number(v)]
  if not numbers_:
    return ''
  mean = sum(numbers_) / len(numbers_)
  if len(numbers_) == 1:
    return format(mean, spec)
  std = (sum((v - mean) ** 2 for v in numbers_) / (len(numbers_) - 1)) ** 0.5
  return (f'{format(mean, spec)} ± {std:.2g} '
          f'[{format(min(numbers_), spec)}, {format(max(numbers_), spec)}]')


def to_csv(table: list[dict], fields: list[str], metrics: list[str]) -> str:
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator='\n')
  writer.writerow(['index', 'name', *fields, 'status', *metrics, *TIMING, 'error'])
  for row in table:
    swept = [points_lib.text(row['overrides'][f]) if f in row['overrides'] else ''
             for f in fields]
    values = [_csv_number(row['metrics'].get(m)) for m in metrics]
    timing = [_csv_number(row[k]) for k in TIMING]
    writer.writerow([row['index'], row['name'], *swept, row['status'], *values, *timing,
                     row['error']])
  return buf.getvalue()


def to_markdown(table: list[dict], fields: list[str], metrics: list[str], counts: dict,
                title: str) -> str:
  labels = naming.labels(fields)
  header = ['index', 'name', *(labels[f] for f in fields), 'status', *metrics, 'wall time (s)',
            'steps/s']
  lines = [f'# Sweep results: {title}', '',
           f'{len(table)} points: ' + ', '.join(f'{n} {s}' for s, n in counts.items() if n), '',
           '| ' + ' | '.join(header) + ' |',
           '| ' + ' | '.join('---:' if h not in ('name', 'status') else '---' for h in header)
           + ' |']
  for row in table:
    cells = [str(row['index']), row['name'],
             *(naming.value_text(row['overrides'][f]) if f in row['overrides'] else ''
               for f in fields), row['status'],
             *(_round(row['metrics'].get(m)) for m in metrics),
             _round(row['wall_time_s'], '.1f'), _round(row['train_steps_per_s'], '.1f')]
    lines.append('| ' + ' | '.join(c.replace('|', '\\|') for c in cells) + ' |')
  failed = [r for r in table if r['status'] == 'failed']
  if failed:
    lines += ['', '## Failed points', '']
    lines += [f'- {r["index"]} `{r["name"]}`: {r["error"]}' for r in failed]
  return '\n'.join(lines) + '\n'


def _number(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _csv_number(value: Any) -> str:
  return repr(float(value)) if _number(value) else ''


def _round(value: Any, spec: str = '.4g') -> str:
  return format(value, spec) if _number(value) else ''
