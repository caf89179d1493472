"""Sweep CLI: every point of a sweep as an ordinary aelab run in DIR/<name>/, N at a time.

    python -m aelab.sweep --config=experiments/sparse_kl_mnist.py:tiny --workdir=DIR
        [--sweep='loss.kl_sparsity.weight=0.3,1,3' --sweep='seed=0,1,2'] [--config.a.b=v ...]
        [--parallel=N] [--list | --count | --index=I | --summarize] [--metric=test/loss]

The points are the config file's get_sweep(ARG) times the --sweep axes (a product). Point I runs
`python -m aelab.run --config=<the same> --workdir=DIR/<name> <the --config.* overrides> <the
point's overrides>`. A rerun skips finished points and resumes the others from their
checkpoints. At the end DIR/results.csv, results.md and plots/ summarise every point (see
docs/sweeps.md). Exit codes: 0 every point done; 1 a point failed or did not finish (its error in
DIR/<name>/error.txt); 2 an error before anything ran (one line on stderr); 75 the sweep was
stopped by SIGTERM/SIGINT (forwarded to the running points, which checkpoint): rerun to resume.
"""

from __future__ import annotations

import pathlib
import shlex
import sys

from aelab import cli, files
from aelab.config import files as config_files
from aelab.errors import AelabError
from aelab.sweep import (axes, figures, groups, layout, points as points_lib, runner, summary,
                         validate)

FLAGS = (
    cli.Flag('workdir', str, None, 'The sweep directory: DIR/<name>/ per point, DIR/results.* '
             '(required but with --list and --count).'),
    cli.Flag('sweep', str, None, "An axis FIELD=V1,V2,... (';' between values when a value holds "
             "a comma), e.g. --sweep='seed=0,1,2'; axes combine as a product, and with the "
             "file's get_sweep points.", repeat=True),
    cli.Flag('file_sweep', bool, True, "Use the config file's get_sweep(ARG) points; false: "
             'only the --sweep axes.'),
    cli.Flag('parallel', int, 1, 'Points run at a time.'),
    cli.Flag('list', bool, False, 'Print index, name and overrides of every point and exit.'),
    cli.Flag('count', bool, False, 'Print the number of points and exit (for job arrays).'),
    cli.Flag('index', int, -1, 'Run point I alone (one task of a job array); -1: all.'),
    cli.Flag('summarize', bool, False, 'Rebuild results.csv, results.md and plots/ from the run '
             'directories, and exit.'),
    cli.Flag('metric', str, 'test/loss', 'The metric plotted against each swept field; several, '
             'comma-separated, share a plot (test/mse,test/pca_mse).'),
    cli.Flag('seeds_together', bool, False, 'Train points that differ only in seed in one '
             'process (aelab.trainer.replicas).'),
    cli.Flag('group_size', int, 8, 'With --seeds_together: at most this many points a process.'),
    cli.Flag('together_by', str, 'map', "With --seeds_together: 'map' runs a group's points one "
             "after the other inside one program (each computes exactly what it would alone), "
             "'vmap' batches them (faster where the device has room to spare, e.g. a GPU and small "
             'models; the numbers differ in the last bits).'),
    cli.Flag('group', str, '', 'Internal (--seeds_together): train points i,j,k in this process.'),
)


def sweep_points(variants: points_lib.Variants, flags, spec: str,
                 base: list[str]) -> list[points_lib.Point]:
  """The validated points (nothing written yet)."""
  from_file = config_files.load_sweep(spec) if flags.file_sweep else None
  from_cli = axes.parse(flags.sweep, variants(''))
  return points_lib.build(variants(''), points_lib.combine(from_file, from_cli), base, variants)


def run_command(flags, spec: str, workdir: pathlib.Path, base: list[str]):
  """A job's argv: a lone point's `python -m aelab.run ...`, or a group's `python -m aelab.sweep
  ... --group=i,j,k` (the same points, so the same indices)."""
  def command(group: list[points_lib.Point]) -> list[str]:
    if len(group) == 1:
      return [sys.executable, '-m', 'aelab.run',
              f'--config={points_lib.with_variant(spec, group[0].variant)}',
              f'--workdir={workdir / group[0].name}', *base, *group[0].args]
    return [sys.executable, '-m', 'aelab.sweep', f'--config={spec}', f'--workdir={workdir}',
            *base, *(f'--sweep={s}' for s in flags.sweep), f'--file_sweep={flags.file_sweep}',
            f'--together_by={flags.together_by}', f'--group={",".join(str(p.index) for p in group)}']
  return command


def main(config, flags, spec: str, base: list[str]) -> None:
  variants = points_lib.Variants(spec, config, base)
  pts = sweep_points(variants, flags, spec, base)
  if flags.list or flags.count:
    _print_points(pts, flags.count)
    return
  workdir = _check_workdir(flags.workdir)
  if flags.together_by not in ('map', 'vmap'):
    raise AelabError(f"--together_by={flags.together_by!r}; valid choices: map, vmap")
  if flags.group:
    sys.exit(groups.run(variants, groups.parse(flags.group, pts), workdir, flags.together_by))
  if not flags.summarize:
    validate.points(variants, _chosen(pts, flags.index), workdir)  # before anything is written
  title = shlex.join([f'--config={spec}', *base, *(f'--sweep={s}' for s in flags.sweep),
                      *([] if flags.file_sweep else ['--file_sweep=false'])])
  if flags.summarize:
    _summarize(pts, workdir, flags.metric, title)
    return
  if flags.parallel < 1:
    raise AelabError(f'--parallel={flags.parallel}; give at least 1')
  chosen = _chosen(pts, flags.index)
  together = flags.seeds_together and flags.index < 0
  jobs = groups.plan(chosen, together, flags.group_size)
  record = {'config': spec, 'overrides': base, 'sweep': flags.sweep,
            'file_sweep': flags.file_sweep, 'points': [p.to_json() for p in pts]}
  layout.check_record(workdir, record)
  files.write_json(workdir / layout.SWEEP_FILE, record)
  todo = [[p for p in job if layout.summary(workdir / p.name) is None] for job in jobs]
  outcome = runner.Runner(workdir, run_command(flags, spec, workdir, base), len(chosen)).run(
      [job for job in todo if job], flags.parallel)
  if flags.index < 0:
    _summarize(pts, workdir, flags.metric, title)
  sys.exit(_exit_code(outcome, chosen))


def _chosen(pts: list, index: int) -> list:
  if index < 0:
    return pts
  if index >= len(pts):
    raise AelabError(f'--index={index}: the sweep has {len(pts)} points (0-{len(pts) - 1})')
  return [pts[index]]


def _exit_code(outcome: runner.Outcome, chosen: list) -> int:
  if outcome.stopped:
    return 75
  done = sum(outcome.status.get(p.index, 'done') == 'done' for p in chosen)
  return 0 if done == len(chosen) else 1


def _print_points(pts: list, count_only: bool) -> None:
  if count_only:
    print(len(pts))
    return
  width = max(len(p.name) for p in pts)
  for p in pts:
    print(f'{p.index:>{len(str(len(pts) - 1))}}  {p.name:<{width}}  {p.describe()}')


def _summarize(pts: list, workdir: pathlib.Path, metric: str, title: str) -> None:
  metrics = [m.strip() for m in metric.split(',') if m.strip()]
  result = summary.write(pts, workdir, title, metrics)
  missing = [m for m in metrics if m not in result['metrics']]
  if result['counts']['done'] and missing:
    print(f'aelab: warning: no finished point has {", ".join(missing)}; metrics: '
          f'{", ".join(result["metrics"])}', file=sys.stderr, flush=True)
  figures.plot_all(result['rows'], result['fields'], metrics, workdir / 'plots')
  counts = ', '.join(f'{n} {s}' for s, n in result['counts'].items() if n)
  print(f'aelab: sweep of {len(pts)} points: {counts}. Results in {workdir}/results.md',
        flush=True)


def _check_workdir(text: str | None) -> pathlib.Path:
  if text is None:
    raise AelabError('--workdir is required: the sweep directory, e.g. --workdir=sweeps/kl')
  if not text.strip():
    raise AelabError('--workdir is empty; give the sweep directory, e.g. --workdir=sweeps/kl')
  workdir = pathlib.Path(text)
  if workdir.exists() and not workdir.is_dir():
    raise AelabError(f'--workdir={text!r} is a file, not a directory; choose another path')
  return workdir


def run(argv: list[str] | None = None) -> None:
  cli.main(argv, prog='python -m aelab.sweep', doc=__doc__, flags=FLAGS, run=main)


if __name__ == '__main__':
  run()
