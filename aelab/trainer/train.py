"""train_and_evaluate: build -> restore or init -> the block loop (log, evaluations due,
checkpoints due) -> final evaluations and summary.json. Rerunning resumes; a finished run says so."""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable

import jax
import ml_collections

from aelab.errors import AelabError
from aelab.trainer import checkpoint, optim, sharding, signals
from aelab.trainer.loop import Diverged, Loop
from aelab.trainer.setup import Setup, build, param_count
from aelab.trainer.writers import MetricWriter, read_jsonl, write_json

# Fields that must not change when a run resumes from its workdir.
FROZEN_ON_RESUME = ('seed', 'dataset', 'preprocessing', 'model', 'loss', 'optimizer', 'input_noise',
                    'train.batch_size')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                       should_stop: Callable[[int], bool] | None = None) -> dict:
  """Trains `config` in `workdir`, resuming from its latest verified checkpoint; returns the
  summary. A run stopped by SIGTERM/SIGINT or `should_stop(step)` (asked after every block)
  checkpoints and returns {'step', 'interrupted'}; rerunning resumes exactly where it stopped.
  Rerunning a finished run returns its summary with 'already_complete': True."""
  t_start = time.time()
  with signals.catch():
    workdir = check_workdir(workdir)
    setup = build(config, workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with checkpoint.Checkpoints(workdir, config.train.keep_checkpoints, writer=True) as ckpts:
      state, prep, meta = _restore_or_init(setup, ckpts, workdir)
      start = int(meta.get('step', 0))
      done = _finished_summary(workdir, start, setup.total_steps)
      if done is not None:
        return {**done, 'already_complete': True}
      if jax.process_index() == 0:
        write_json(workdir / 'config.json', json.loads(config.to_json()))
      with MetricWriter(workdir, _rows_to_keep(workdir, meta, start),
                        enabled=jax.process_index() == 0) as writer:
        stop = lambda step: signals.received() or (  # noqa: E731
            'should_stop' if should_stop is not None and should_stop(step) else None)
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
        results = _final_evaluations(setup, result.state, prep, writer, result.step)
        if results is None:
          return {**stopped, 'interrupted': signals.received(), 'during': 'evaluation'}
    summary = _summary(setup, result, results, start, time.time() - t_start)
    if jax.process_index() == 0:
      write_json(workdir / 'summary.json', summary)
  return summary


def check_workdir(workdir: str | pathlib.Path) -> pathlib.Path:
  if not str(workdir).strip():
    raise AelabError('--workdir is empty; give the directory to train into, e.g. '
                     '--workdir=workdirs/mnist_ae')
  workdir = pathlib.Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise AelabError(f'--workdir={str(workdir)!r} is a file, not a directory; choose another path')
  return workdir


def _check_resume_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
  path = workdir / 'config.json'
  if not path.exists():
    return
  old, new = json.loads(path.read_text()), json.loads(config.to_json())
  get = lambda cfg, key: cfg.get(key) if '.' not in key else (  # noqa: E731
      cfg.get(key.split('.')[0]) or {}).get(key.split('.')[1])
  changed = [k for k in FROZEN_ON_RESUME if get(old, k) != get(new, k)]
  if changed:
    raise AelabError(
        f'{workdir} holds a run whose config differs in {", ".join(changed)}; resuming would mix '
        'two experiments. Use a new --workdir, or delete the old one.')


def _restore_or_init(setup: Setup, ckpts: checkpoint.Checkpoints, workdir: pathlib.Path):
  """(state, prep, meta) on the devices: the latest verified checkpoint's, or fresh ones."""
  rep = sharding.replicated(setup.mesh)
  prep = sharding.put_tree(setup.prep, rep)
  if ckpts.latest_step() is None:
    return jax.jit(setup.init, out_shardings=rep)(setup.init_rng), prep, {}
  _check_resume_config(workdir, setup.config)
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep),
                          jax.eval_shape(setup.init, setup.init_rng))
  step, arrays, meta = ckpts.restore({'state': abstract,
                                      'preprocessing': checkpoint.abstract(prep.stats)})
  if step > setup.total_steps:
    raise AelabError(f'{workdir} holds a checkpoint at step {step}, beyond this config\'s '
                     f'{setup.total_steps} steps; raise train.num_steps or use a new --workdir')
  return arrays['state'], prep.replace(stats=arrays['preprocessing']), {**meta, 'step': step}


def _finished_summary(workdir: pathlib.Path, step: int, total_steps: int) -> dict | None:
  """The summary of a run that already finished these steps, else None."""
  path = workdir / 'summary.json'
  if step != total_steps or not path.exists():
    return None
  try:
    summary = json.loads(path.read_text())
  except json.JSONDecodeError:
    return None
  return summary if summary.get('step') == total_steps else None


def _rows_to_keep(workdir: pathlib.Path, meta: dict, step: int) -> int:
  """metrics.jsonl rows written before the checkpoint resumed from (all of them for a fresh run
  are dropped). Checkpoints of earlier versions did not count them: keep rows up to their step."""
  if 'metrics_rows' in meta:
    return int(meta['metrics_rows'])
  return sum(1 for r in read_jsonl(workdir / 'metrics.jsonl') if r.get('step', 0) <= step) \
      if step else 0


def _train(setup: Setup, state, prep, start: int, ckpts, writer, meta: dict, stop):
  tc, total = setup.config.train, setup.total_steps
  loop = Loop(setup.train_block(), setup.batches, steps_per_call=tc.steps_per_call,
              total_steps=total, log_every=tc.log_every, log=writer.write,
              learning_rate=optim.schedule(setup.config.optimizer, total),
              progress=tc.progress and jax.process_index() == 0)
  loop.pending.restore(meta.get('pending_metrics'))
  periodic = [ev for ev in setup.evaluators if ev.every > 0]
  run_meta = setup.meta()

  def at_boundary(step: int, state, stopping: bool) -> None:
    for ev in periodic:
      if step < total and not stopping and ev.due(step, final=False):
        _log(writer, step, ev, ev.run(state, prep))
    if stopping or step == total or (tc.checkpoint_every and step % tc.checkpoint_every == 0):
      ckpts.save(step, {'state': state, 'preprocessing': prep.stats},
                 {**run_meta, 'step': step, 'pending_metrics': loop.pending.to_json(),
                  'metrics_rows': writer.rows})

  periods = (tc.checkpoint_every, *(ev.every for ev in periodic))
  return loop.run(state, prep, start, total, periods=periods, at_boundary=at_boundary,
                  should_stop=stop)


def _log(writer: MetricWriter, step: int, ev, metrics: dict) -> dict:
  if metrics:
    writer.write(step, {f'{ev.split}/{k}': v for k, v in metrics.items()})
  return metrics


def _final_evaluations(setup: Setup, state, prep, writer, step: int) -> dict | None:
  """Every evaluator due at the end, by split; None when a stop request interrupted them."""
  results: dict[str, dict] = {}
  for ev in setup.evaluators:
    if signals.received():
      return None
    if ev.due(step, final=True):
      results.setdefault(ev.split, {}).update(_log(writer, step, ev, ev.run(state, prep)))
  return {k: v for k, v in results.items() if v}


def _summary(setup: Setup, result, results: dict, start: int, wall_s: float) -> dict:
  timed = result.timed_steps > 0 and result.timed_s > 0
  rate = result.timed_steps / result.timed_s if timed else None
  return {
      'step': result.step,
      'wall_time_s': wall_s,
      'train_steps_per_s': rate,
      'train_examples_per_s': rate * setup.config.train.batch_size if timed else None,
      'param_count': param_count(result.state.params),
      'resumed_from_step': start or None,
      'devices': setup.mesh.devices.size,
      'platform': jax.devices()[0].platform,
      **results,
  }

