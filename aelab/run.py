"""Training CLI: `python -m aelab.run --config=experiments/mnist_ae.py[:tiny] --workdir=DIR`.

Any config field can be overridden, e.g. `--config.optimizer.learning_rate=3e-4`. Rerunning the
same command resumes from the latest verified checkpoint in DIR; rerunning a finished run says
so. Exit codes: 0 finished (or already finished), 2 an error (one line on stderr), 75 stopped by
SIGTERM/SIGINT with a checkpoint saved (rerun the same command to resume; schedulers requeue
on it), or stopped because another process of a multi-process run died.

Multi-process (multi-host) runs: the same command on every process, plus
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I` (aelab/trainer/distributed.py;
on a TPU pod slice, under SLURM or Open MPI the cluster is detected without them).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from aelab.trainer import signals  # standard library only: installed before anything heavy


def _report(summary: dict, workdir: str) -> None:
  if summary.get('already_complete'):
    print(f'aelab: the run in {workdir} is already complete ({summary["step"]} steps); results '
          f'in {workdir}/summary.json', flush=True)
    return
  if 'interrupted' in summary:
    where = {'evaluation': 'during the final evaluation', 'start': 'before training began'}.get(
        summary.get('during'), f'at step {summary["step"]}/{summary.get("total_steps")}')
    saved = (f'checkpoint at step {summary["checkpoint_step"]} in {workdir}/checkpoints'
             if summary.get('checkpoint_step') is not None else 'nothing to save yet')
    print(f'aelab: stopped by {summary["interrupted"]} {where}; {saved}. Rerun the same command '
          'to resume.', file=sys.stderr, flush=True)
    sys.exit(signals.INTERRUPTED)
  tests = summary.get('test') or summary.get('val') or {}
  figures = ', '.join(f'{k} {v:.5g}' for k, v in tests.items())
  rate = summary['train_steps_per_s']
  print(f'aelab: done, {summary["step"]} steps in {summary["wall_time_s"]:.1f} s'
        f'{f" ({rate:.1f} steps/s)" if rate else ""}. test: {figures}. Results in {workdir}',
        flush=True)


def main(config, flags, spec: str, overrides: list[str]) -> None:
  del spec, overrides  # the resolved config is what the run records
  from absl import logging
  from aelab.trainer import compile_cache, distributed, train  # after parsing: a fast --help
  compile_cache.enable()
  distributed.initialize(flags.coordinator_address, flags.num_processes, flags.process_id,
                         flags.peer_timeout, flags.coordinator_timeout)
  logging.set_verbosity(logging.WARNING)
  try:
    if 'stack' in config:  # a stacked autoencoder: its runs in sub-directories (aelab/stacked)
      from aelab import stacked
      summary = stacked.train_and_evaluate(config, flags.workdir)
    else:
      summary = train.train_and_evaluate(config, flags.workdir)
  except OSError as e:  # a full disk mid-write names no file: name the workdir (cli.guard)
    if e.filename is None:
      e.filename = flags.workdir
    raise
  if 'report' in summary:
    print('\n'.join(summary['report']) + f'\nResults in {flags.workdir}/summary.json', flush=True)
    return
  _report(summary, summary.get('run') and f'{flags.workdir}/{summary["run"]}' or flags.workdir)


def run(argv: Sequence[str] | None = None) -> None:
  with signals.catch():
    from aelab import cli
    flags = (cli.Flag('workdir', str, None, 'Directory for checkpoints, metrics and plots.',
                      required=True), *cli.DISTRIBUTED)
    cli.main(argv, prog='python -m aelab.run', doc=__doc__, flags=flags, run=main)


if __name__ == '__main__':
  run()
