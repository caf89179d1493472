"""train_and_evaluate: build -> restore or init -> the block loop (log, evaluations due,
checkpoints due) -> final evaluations and summary.json. Rerunning resumes; a finished run says so."""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable

import ml_collections

from aelab.errors import AelabError
from aelab.trainer import checkpoint, distributed, optim, signals, workdir as workdir_lib
from aelab.trainer.loop import Diverged, Loop
from aelab.trainer.setup import Setup, build
from aelab.trainer.writers import MetricWriter, write_json

# Fields that must not change when a run resumes from its workdir.
FROZEN_ON_RESUME = workdir_lib.FROZEN_ON_RESUME


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                       should_stop: Callable[[int], bool] | None = None,
                       init_params: dict | None = None) -> dict:
  """Trains `config` in `workdir`, resuming from its latest verified checkpoint; returns the
  summary. A run stopped by SIGTERM/SIGINT or `should_stop(step)` (asked after every block)
  checkpoints and returns {'step', 'interrupted'}; rerunning resumes exactly where it stopped.
  Rerunning a finished run returns its summary with 'already_complete': True. `init_params`
  ({layer name: parameters}, e.g. pretrained layers) replace those layers' initial values in a
  fresh run."""
  t_start = time.time()
  with signals.catch():
    workdir = workdir_lib.check_workdir(workdir)
    setup = build(config, workdir)
    if init_params:
      setup.check_given(init_params)
    workdir.mkdir(parents=True, exist_ok=True)
    with checkpoint.Checkpoints(workdir, config.train.keep_checkpoints, writer=True) as ckpts:
      state, prep, meta = workdir_lib.restore_or_init(setup, ckpts, workdir, given=init_params)
      start = int(meta.get('step', 0))
      done = workdir_lib.finished_summary(workdir, start, setup.total_steps)
      if done is not None:
        return {**done, 'already_complete': True}
      if distributed.is_main():
        write_json(workdir / 'config.json', json.loads(config.to_json()))
      with MetricWriter(workdir, workdir_lib.rows_to_keep(workdir, meta, start),
                        enabled=distributed.is_main()) as writer, distributed.exit_if_peer_lost():
        stop = lambda step: distributed.agree(signals.received() or (  # noqa: E731
            'should_stop' if should_stop is not None and should_stop(step) else None))
        try:
          result = _train(setup, state, prep, start, ckpts, writer, meta, stop)
        except Diverged as e:
          last = ckpts.latest_step()
          where = (f'the last good checkpoint is step {last} in {ckpts.directory}'
                   if last is not None else 'no checkpoint was saved before it')
          raise AelabError(f'{e} (lower optimizer.learning_rate or set optimizer.grad_clip); '
                           f'{where}') from None
        stopped = {'step': result.step, 'total_steps': setup.total_steps,
                   'checkpoint_step': ckpts.latest_step()}
        if result.stopped_by:
          during = 'start' if result.step == start and start < setup.total_steps else 'training'
          return {**stopped, 'interrupted': result.stopped_by, 'during': during}
        results = workdir_lib.final_evaluations(setup, result.state, prep, writer, result.step)
        if results is None:
          return {**stopped, 'interrupted': distributed.agree(signals.received()),
                  'during': 'evaluation'}
    summary = workdir_lib.summary(setup, result, results, start, time.time() - t_start)
    if distributed.is_main():
      write_json(workdir / 'summary.json', summary)
  return summary


def _train(setup: Setup, state, prep, start: int, ckpts, writer, meta: dict, stop):
  tc, total = setup.config.train, setup.total_steps
  loop = Loop(setup.train_block(), setup.batches, steps_per_call=tc.steps_per_call,
              total_steps=total, log_every=tc.log_every, log=writer.write,
              learning_rate=optim.logged_rate(setup.config.optimizer, total),
              progress=tc.progress and distributed.is_main())
  loop.pending.restore(meta.get('pending_metrics'))

  def at_boundary(step: int, state, stopping: bool) -> None:
    workdir_lib.boundary_work(setup, ckpts, writer, step, state, prep, stopping,
                              loop.pending.to_json())

  return loop.run(state, prep, start, total, periods=workdir_lib.periods(setup),
                  at_boundary=at_boundary, should_stop=stop)
