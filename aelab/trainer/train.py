"""The one driver: build -> restore or init -> the block loop (log, evaluations due, checkpoints
due) -> final evaluations and summary.json, for one run or for runs that differ only in their
seed trained together in one program (aelab/trainer/replicas.py). Rerunning resumes; a finished
run says so; in a run of several processes every stop is agreed and a lost peer ends it.

    summary = train.train_and_evaluate(config, workdir)
    summaries = train.train_together(configs, workdirs, how='map')
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import time
from collections.abc import Callable, Sequence

import ml_collections

from aelab.errors import AelabError
from aelab import tracking
from aelab.files import write_json
from aelab.trainer import checkpoint, distributed, optim, replicas, signals
from aelab.trainer import workdir as workdir_lib
from aelab.trainer.loop import Diverged, Loop
from aelab.trainer.setup import Setup, build
from aelab.trainer.writers import MetricWriter

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
  return train_together([config], [workdir], should_stop, init_params=init_params)[0]


def train_together(configs: Sequence[ml_collections.ConfigDict],
                   workdirs: Sequence[str | pathlib.Path],
                   should_stop: Callable[[int], bool] | None = None, how: str = 'map',
                   init_params: dict | None = None) -> list[dict]:
  """Trains the runs `configs` (more than one: differing only in their seed, see replicas.py)
  in `workdirs`; returns each run's summary, or {'step', 'interrupted', ...} for every run when
  a stop request stopped them. `how` (runs trained together): 'map' runs their blocks one after
  the other inside the program, 'vmap' batches them."""
  t_start = time.time()
  if len(configs) > 1:
    replicas.check_together(configs, workdirs, how, init_params)
  with signals.catch():
    workdirs = [workdir_lib.check_workdir(w) for w in workdirs]
    setups = [build(c, w) for c, w in zip(configs, workdirs)]
    replicas.check_setups(setups)
    if init_params:
      setups[0].check_given(init_params)
    for w in workdirs:
      w.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
      ckpts = [stack.enter_context(checkpoint.Checkpoints(w, s.config.train.keep_checkpoints,
                                                          writer=True))
               for s, w in zip(setups, workdirs)]
      got, start = replicas.restore(setups, ckpts, workdirs, init_params)
      done = [workdir_lib.finished_summary(w, start, s.total_steps)
              for s, w in zip(setups, workdirs)]
      if all(d is not None for d in done):
        return [{**d, 'already_complete': True} for d in done]
      main = distributed.is_main()
      writers = [stack.enter_context(MetricWriter(
          w, workdir_lib.rows_to_keep(w, meta, start), enabled=main,
          writers=tracking.open_all(c, w) if main else ()))
                 for c, w, (_, _, meta) in zip(configs, workdirs, got)]
      if main:
        for c, w in zip(configs, workdirs):
          write_json(w / 'config.json', json.loads(c.to_json()))
      with distributed.exit_if_peer_lost():
        out = _train_and_finish(setups, got, start, ckpts, writers, should_stop, how, t_start)
      for writer, w, summary in zip(writers, workdirs, out):
        if 'interrupted' not in summary:
          writer.finish(summary, sorted((w / 'plots').glob('*.png')))
  if distributed.is_main():
    for w, summary in zip(workdirs, out):
      if 'interrupted' not in summary:
        write_json(w / 'summary.json', summary)
  return out


def _train_and_finish(setups, got, start, ckpts, writers, should_stop, how, t_start) -> list[dict]:
  runs = replicas.Runs(setups, got, how)
  stop = lambda step: distributed.agree(signals.received() or (  # noqa: E731
      'should_stop' if should_stop is not None and should_stop(step) else None))
  try:
    result = _train(runs, start, ckpts, writers, stop)
  except Diverged as e:
    last = ckpts[0].latest_step()
    where = (f'the last good checkpoint is step {last} in {ckpts[0].directory}'
             if last is not None else 'no checkpoint was saved before it')
    together = '; the runs trained together stopped with it' if len(setups) > 1 else ''
    raise AelabError(f'{e} (lower optimizer.learning_rate or set optimizer.grad_clip); '
                     f'{where}{together}') from None

  def stopped(r: int, by: str | None, during: str) -> dict:
    return {'step': result.step, 'total_steps': setups[r].total_steps,
            'checkpoint_step': ckpts[r].latest_step(), 'interrupted': by, 'during': during}

  if result.stopped_by:
    during = 'start' if result.step == start < setups[0].total_steps else 'training'
    return [stopped(r, result.stopped_by, during) for r in range(len(setups))]
  out = []
  for r, (setup, writer) in enumerate(zip(setups, writers)):
    state, prep = runs.take(result.state, r), runs.take(runs.prep, r)
    results = workdir_lib.final_evaluations(setup, state, prep, writer, result.step)
    if results is None:
      by = distributed.agree(signals.received())
      return [stopped(q, by, 'evaluation') for q in range(len(setups))]
    lone = type(result)(state=state, step=result.step, stopped_by=None,
                        timed_steps=result.timed_steps, timed_s=result.timed_s)
    summary = workdir_lib.summary(setup, lone, results, start, time.time() - t_start)
    out.append({**summary, 'trained_with': len(setups)} if len(setups) > 1 else summary)
  return out


def _train(runs: replicas.Runs, start: int, ckpts, writers, stop):
  first: Setup = runs.setups[0]
  tc, total = first.config.train, first.total_steps
  loop = Loop(runs.block(), runs.batches(), steps_per_call=tc.steps_per_call, total_steps=total,
              log_every=tc.log_every, log=runs.logger(writers),
              learning_rate=optim.logged_rate(first.config.optimizer, total),
              progress=tc.progress and distributed.is_main(),
              replica_names=runs.names(ckpts))
  runs.restore_pending(loop.pending)

  def at_boundary(step: int, state, stopping: bool) -> None:
    for r, (setup, c, writer) in enumerate(zip(runs.setups, ckpts, writers)):
      workdir_lib.boundary_work(setup, c, writer, step, runs.take(state, r),
                                runs.take(runs.prep, r), stopping, runs.pending_json(loop, r))

  return loop.run(runs.state, runs.prep, start, total, periods=workdir_lib.periods(first),
                  at_boundary=at_boundary, should_stop=stop)
