"""Plots of a sweep's metric against each swept field: DIR/plots/<metric>_vs_<field>.png.

One figure per swept field other than `seed` (the seed alone when it is the only one; of zipped
fields, which move in lockstep, the first whose values are numbers): x is the
field's values (sorted numbers, log-scaled when all are positive and span more than a decade;
otherwise the values as categories, in sweep order), one line per combination of the other swept
fields that vary (leaving out `seed` and any field that moves in lockstep with x, as a zipped one),
and one line per metric when several are asked for (with several, each metric also gets its
own figure). Over seeds (and anything else not told apart) each point is the mean, its error bar
the min-max range, and each run a dot. Only finished points count.

A variant axis ('arg', e.g. 'model=beta_vae,strength=4') counts as its variant's fields: each
`key=value` of the string is a field of its own ('model', 'strength'; a bare word is a flag,
True where given), its values numbers where they read as numbers; so a sweep over variants
plots each variant field against the others (one line per model, strength on x).
"""

from __future__ import annotations

import numbers
import pathlib
import re
from collections.abc import Sequence

from aelab.sweep import naming, points

SEED = 'seed'
VARIANT = points.ARG   # the axis of an experiment's variants
NAME_MAX = 120         # a file name's characters: several metrics' joined names above it are
                       # 'N_metrics' (file systems refuse names over 255 bytes)


def plot_all(table: Sequence[dict], fields: Sequence[str], metrics: Sequence[str],
             out: pathlib.Path) -> list[pathlib.Path]:
  """Writes every figure; returns their paths (none when no finished point has the metrics)."""
  from aelab import plots  # matplotlib: imported only when there is something to draw
  done = [r for r in table if r['status'] == 'done' and any(m in r['metrics'] for m in metrics)]
  done, fields = _variant_fields(done, list(fields))
  axes = _representatives(done, [f for f in fields if f != SEED] or list(fields))
  labels = naming.labels(fields)
  paths = []
  for field in axes:
    for chosen in [metrics] + ([[m] for m in metrics] if len(metrics) > 1 else []):
      series, categories, seeds = _series(done, fields, field, chosen, labels)
      if not series:
        continue
      numeric = categories is None
      xs = [x for s in series for x in s['x']]
      log_x = numeric and min(xs) > 0 and max(xs) > 10 * min(xs)
      spread = f'mean and min-max over {seeds} seeds (dots: each run)' if seeds > 1 else ''
      name = _metrics_name(chosen) + f'_vs_{_safe(labels[field])}.png'
      paths.append(plots.sweep_metric(
          series, out / name, xlabel=labels[field], ylabel=', '.join(chosen),
          categories=categories, log_x=log_x, title=spread))
  return paths


def _variant_fields(rows: Sequence[dict], fields: list[str]) -> tuple[list[dict], list[str]]:
  """Rows and fields with a variant axis ('arg') read as its variant's fields (module doc)."""
  if VARIANT not in fields:
    return list(rows), fields
  parsed, keys = [], []
  for r in rows:
    value = r['overrides'].get(VARIANT)
    words = [w.strip() for w in value.split(',') if w.strip()] if isinstance(value, str) else []
    got = {}
    for w in words:
      key, _, text = w.partition('=')
      got[key] = _number(text) if text else True
      keys += [key] if key not in keys else []
    overrides = {k: v for k, v in r['overrides'].items() if k != VARIANT} | got
    parsed.append({**r, 'overrides': overrides})
  at = fields.index(VARIANT)
  return parsed, fields[:at] + [k for k in keys if k not in fields] + fields[at + 1:]


def _number(text: str):
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def _series(rows: Sequence[dict], fields: Sequence[str], field: str, metrics: Sequence[str],
            labels: dict) -> tuple[list[dict], list[str] | None, int]:
  """(series for plots.sweep_metric, category labels or None, the most seeds in one point)."""
  rows = [r for r in rows if field in r['overrides']]
  others = [g for g in fields if g not in (field, SEED) and _varies(rows, g)
            and not _tied(rows, field, g)]
  values = list({repr(r['overrides'][field]): r['overrides'][field] for r in rows}.values())
  numeric = _numeric(rows, field)
  values = sorted(values) if numeric else values
  position = {repr(v): (v if numeric else i) for i, v in enumerate(values)}
  lines: dict[str, list[dict]] = {}
  for r in rows:
    key = ', '.join(f'{labels[g]}={naming.value_text(r["overrides"][g])}'
                    for g in others if g in r['overrides'])
    lines.setdefault(key, []).append(r)
  series, seeds = [], 1
  for key, members in lines.items():
    for metric in metrics:
      s = {'label': ' '.join(filter(None, (key, metric if len(metrics) > 1 else ''))),
           'x': [], 'mean': [], 'low': [], 'high': [], 'points': []}
      for v in values:
        got = [r['metrics'][metric] for r in members
               if repr(r['overrides'][field]) == repr(v) and metric in r['metrics']]
        if got:
          seeds = max(seeds, len(got))
          s['x'].append(position[repr(v)])
          s['mean'].append(sum(got) / len(got))
          s['low'].append(min(got))
          s['high'].append(max(got))
          s['points'] += [(position[repr(v)], g) for g in got]
      if s['x']:
        series.append(s)
  return series, None if numeric else [naming.value_text(v) for v in values], seeds


def _representatives(rows: Sequence[dict], axes: list[str]) -> list[str]:
  """One field of each set that moves in lockstep (zipped): the first with numbers, if any."""
  out: list[str] = []
  for field in axes:
    twin = next((f for f in out if _tied(rows, f, field)), None)
    if twin is None:
      out.append(field)
    elif _numeric(rows, field) and not _numeric(rows, twin):
      out[out.index(twin)] = field
  return out


def _numeric(rows: Sequence[dict], field: str) -> bool:
  return all(isinstance(v, numbers.Real) and not isinstance(v, bool)
             for v in (r['overrides'].get(field) for r in rows))


def _varies(rows: Sequence[dict], field: str) -> bool:
  return len({repr(r['overrides'].get(field)) for r in rows}) > 1


def _tied(rows: Sequence[dict], a: str, b: str) -> bool:
  """True when b's value is a function of a's and the other way round (zipped fields)."""
  pairs = {(repr(r['overrides'].get(a)), repr(r['overrides'].get(b))) for r in rows}
  return len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs})


def _metrics_name(metrics: Sequence[str]) -> str:
  """'test_mig+test_sap' for a figure's metrics, or 'N_metrics' when that is too long a name."""
  joined = _safe('+'.join(metrics))
  return joined if len(joined) <= NAME_MAX else f'{len(metrics)}_metrics'


def _safe(text: str) -> str:
  return re.sub(r'[^A-Za-z0-9._+-]', '_', text)
