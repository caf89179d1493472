"""The sparsity frontier of sparse-dictionary sweeps: L0 against the variance explained, one line
per sweep directory (what python -m aelab.sweep wrote), read from each DIR/results.csv.

    python -m aelab.analysis.frontier --out=frontier.png DIR [DIR ...] [--split=test]

Each sweep's finished points (status `done`, with both metrics) become one line labelled by the
directory's name, sorted by L0: x = <split>/l0 (active latents per example, log scale), y =
<split>/variance_explained (the `sae` evaluator); where the sweeps have the `downstream`
evaluator's <split>/fraction_recovered, a second panel draws it against L0. The markdown table
printed on stdout has one row per point: sweep, point (its name in the sweep), l0,
variance_explained and, where a sweep has the `downstream` evaluator's column,
fraction_recovered.
"""

from __future__ import annotations

import argparse
import csv
import math
import pathlib
import sys
from collections.abc import Sequence
from typing import NamedTuple

from aelab import cli
from aelab.errors import AelabError

PROG = 'python -m aelab.analysis.frontier'
METRICS = ('l0', 'variance_explained')
OPTIONAL = ('fraction_recovered',)


class Point(NamedTuple):
  name: str
  l0: float
  variance_explained: float
  fraction_recovered: float | None


class Sweep(NamedTuple):
  label: str
  directory: pathlib.Path
  points: list[Point]   # sorted by l0


def _number(text: str | None) -> float | None:
  try:
    value = float(text)
  except (TypeError, ValueError):
    return None
  return value if math.isfinite(value) else None


def read(directory: str | pathlib.Path, split: str = 'test') -> Sweep:
  """The finished points of the sweep in `directory` (its results.csv), sorted by L0."""
  directory = pathlib.Path(directory)
  path = directory / 'results.csv'
  if not path.is_file():
    raise AelabError(f'{path} is missing; run python -m aelab.sweep --workdir={directory} (or '
                     'its --summarize) first')
  with open(path, newline='') as f:
    reader = csv.DictReader(f)
    columns = reader.fieldnames or []
    rows = list(reader)
  need = ['name', *(f'{split}/{m}' for m in METRICS)]
  missing = [c for c in need if c not in columns]
  if missing:
    raise AelabError(f'{path} has no column {", ".join(missing)}; the sweep needs the sae '
                     f"evaluator on the {split} split (evals.sae = dict(type='sae', "
                     f"split='{split}'))")
  points = []
  for row in rows:
    if row.get('status', 'done') != 'done':
      continue
    l0, ve = (_number(row[f'{split}/{m}']) for m in METRICS)
    if l0 is None or ve is None:
      continue
    points.append(Point(row['name'], l0, ve, _number(row.get(f'{split}/fraction_recovered'))))
  label = directory.resolve().name or str(directory)
  return Sweep(label, directory, sorted(points, key=lambda p: p.l0))


def table(sweeps: Sequence[Sweep]) -> str:
  """The markdown table of every point (fraction_recovered only where some sweep has it)."""
  recovered = any(p.fraction_recovered is not None for s in sweeps for p in s.points)
  header = ['sweep', 'point', 'l0', 'variance_explained'] + (
      ['fraction_recovered'] if recovered else [])
  lines = ['| ' + ' | '.join(header) + ' |',
           '| ' + ' | '.join('---' if h in ('sweep', 'point') else '---:' for h in header) + ' |']
  for s in sweeps:
    for p in s.points:
      cells = [s.label, p.name, f'{p.l0:.4g}', f'{p.variance_explained:.4g}']
      if recovered:
        cells.append('' if p.fraction_recovered is None else f'{p.fraction_recovered:.4g}')
      lines.append('| ' + ' | '.join(c.replace('|', '\\|') for c in cells) + ' |')
  return '\n'.join(lines) + '\n'


def plot(sweeps: Sequence[Sweep], out: str | pathlib.Path, split: str = 'test') -> pathlib.Path:
  """Writes the frontier figure to `out` (its format from its suffix, e.g. .png)."""
  from aelab import plots  # matplotlib, only when a figure is drawn
  return plots.frontier(sweeps, out, split)


def main(argv: Sequence[str] | None = None) -> str:
  """Reads the sweeps, writes the figure, returns the markdown table."""
  parser = cli.Parser(prog=PROG, description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--out', required=True, help='the figure to write (e.g. frontier.png)')
  parser.add_argument('--split', default='test', help='the split whose metrics to read')
  parser.add_argument('dirs', nargs='+', metavar='DIR', help='a sweep directory')
  args = parser.parse_args(argv)
  if pathlib.Path(args.out).suffix.lower() not in ('.png', '.pdf', '.svg'):
    raise AelabError(f'--out={args.out!r}: the figure is written as .png, .pdf or .svg')
  sweeps = [read(d, args.split) for d in args.dirs]
  if not any(s.points for s in sweeps):
    raise AelabError(f'no finished point with {args.split}/l0 and {args.split}/variance_explained '
                     f'in {", ".join(args.dirs)}')
  plot(sweeps, args.out, args.split)
  return table(sweeps)


def run(argv: Sequence[str] | None = None) -> None:
  with cli.guard():
    text = main(list(sys.argv[1:] if argv is None else argv))
  print(text, end='', flush=True)


if __name__ == '__main__':
  run()
