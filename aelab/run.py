"""Training CLI: `python -m aelab.run --config=experiments/mnist_ae.py[:tiny] --workdir=DIR`.

Any config field can be overridden, e.g. `--config.optimizer.learning_rate=3e-4`. Rerunning the
same command resumes from the latest checkpoint in DIR.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from aelab import config as config_lib

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file[:arg].',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and plots.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  from aelab.trainer import sharding, train  # imported after flag parsing: keeps --help fast
  sharding.maybe_initialize_distributed()
  logging.set_verbosity(logging.WARNING)
  summary = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if 'interrupted' not in summary:
    tests = summary.get('test') or summary.get('val') or {}
    figures = ', '.join(f'{k} {v:.5g}' for k, v in tests.items())
    print(f'aelab: done, {summary["step"]} steps in {summary["wall_time_s"]:.1f} s '
          f'({summary["train_steps_per_s"]:.1f} steps/s). test: {figures}. '
          f'Results in {_WORKDIR.value}', flush=True)


def run(argv: list[str] | None = None) -> None:
  config_lib.run_app(main, list(sys.argv if argv is None else argv))


if __name__ == '__main__':
  run()
