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
  """Writes the frontier figure to `out` (its format from its suffix, e.g. .png); where some
  sweep has fraction_recovered, a second panel draws it against L0 the same way."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  from matplotlib import ticker
  out = pathlib.Path(out)
  panels = [('variance_explained', f'variance explained ({split})')]
  if any(p.fraction_recovered is not None for s in sweeps for p in s.points):
    panels.append(('fraction_recovered', f'downstream fraction recovered ({split})'))
  fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
  for ax, (field, ylabel) in zip(axes[0], panels):
    for s in sweeps:
      pts = [p for p in s.points if getattr(p, field) is not None]
      if pts:
        ax.plot([p.l0 for p in pts], [getattr(p, field) for p in pts], marker='o', ms=4, lw=1.2,
                label=s.label)
    ax.set_xscale('log')
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f'{v:g}'))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel(f'L0: active latents per example ({split}, log scale)')
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=8, loc='lower right')
    ax.set_title(f'L0 vs {field.replace("_", " ")}', fontsize=10)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.tight_layout()
  fig.savefig(out, dpi=100, bbox_inches='tight')
  plt.close(fig)
  return out


class _Parser(argparse.ArgumentParser):
  """argparse whose usage errors are AelabErrors: one line, exit 2, like python -m aelab.run."""

  def error(self, message: str):
    raise AelabError(f'{message} (see {self.prog} --help)')


def main(argv: Sequence[str] | None = None) -> str:
  """Reads the sweeps, writes the figure, returns the markdown table."""
  parser = _Parser(prog=PROG, description=__doc__,
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
  try:
    text = main(list(sys.argv[1:] if argv is None else argv))
  except AelabError as e:
    print(f'aelab: error: {e}', file=sys.stderr, flush=True)
    sys.exit(2)
  print(text, end='', flush=True)


if __name__ == '__main__':
  run()
