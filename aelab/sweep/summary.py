"""The summary of a sweep, rebuilt from the run directories alone: DIR/results.csv, results.md and
plots/ (aelab/sweep/figures.py).

One row per point: `index`, `name`, each swept field in its own column (the CSV names it by its
path and writes the value as `--config.a.b=` takes it; the markdown table by its short label),
`status` (done, failed, interrupted, running, pending: aelab/sweep/layout.py), every final metric
of the point's summary.json flattened as `val/mse`, `test/bce`, ... (val first, then test, then
any other split), `wall_time_s` (of the run's last invocation) and `train_steps_per_s`; and, for a
failed point, its one-line `error`. Empty cells where a point has no value.
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


def write(points: Sequence[Point], workdir: pathlib.Path, title: str) -> dict[str, Any]:
  """Writes results.csv and results.md; returns {'columns', 'rows', 'counts'}."""
  metrics, table = rows(points, workdir)
  fields = naming.fields([p.overrides for p in points])
  files.write_text(workdir / 'results.csv', to_csv(table, fields, metrics))
  counts = {s: sum(r['status'] == s for r in table) for s in layout.STATUSES}
  files.write_text(workdir / 'results.md', to_markdown(table, fields, metrics, counts, title))
  return {'metrics': metrics, 'rows': table, 'fields': fields, 'counts': counts}


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
