"""Runs that differ only in their seed, trained together in one jitted program.

    summaries = replicas.train_and_evaluate_together(configs, workdirs)

Each run keeps everything its seed decides: its data split and batch order, its preprocessing
statistics, its initial parameters and its noise. Their states are stacked on a leading axis and
the trainer's own train block is vmapped over it (aelab/trainer/state.py), inside the one block
loop (aelab/trainer/loop.py). Every workdir is written as a lone run of that config writes it
(config.json, verified checkpoints of the run's own state, metrics.jsonl, TensorBoard, plots,
summary.json), so `python -m aelab.run` and `python -m aelab.inspect` read each one as usual, and
a rerun resumes them together from the newest step every one of them has.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from aelab.errors import AelabError
from aelab.trainer import checkpoint, optim, sharding, signals, workdir as workdir_lib
from aelab.trainer.batches import Rows
from aelab.trainer.loop import Diverged, Loop
from aelab.trainer.setup import Setup, build
from aelab.trainer.state import make_train_block
from aelab.trainer.writers import MetricWriter, write_json


def _stack(trees):
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def _take(tree, r: int):
  return jax.tree.map(lambda a: a[r], tree)


class StackedBatches:
  """Every replica's batches of a block, stacked: its own rows of its own training split."""

  def __init__(self, setups: Sequence[Setup], mesh):
    self.batches = [s.batches for s in setups]
    self.on_device = self.batches[0].on_device
    self._spec = sharding.batch_sharding(mesh, 2)
    self._device = sharding.put_tree(_stack([b.arrays for b in self.batches]),
                                     sharding.replicated(mesh)) if self.on_device else None
    self._rows_key, self._rows = None, None

  def block(self, start: int, k: int):
    first = self.batches[0]
    if self._device is not None:  # every replica's Rows, stacked [R, m * spe, B]: once an epoch
      key = first.epochs(start, k)
      if key != self._rows_key:
        order = np.stack([b.order(*key) for b in self.batches])
        self._rows_key, self._rows = key, sharding.put(order, self._spec)
      return self._device, Rows(self._rows, k, first.steps_per_epoch)
    idx = [b.indices(start, k) for b in self.batches]
    host = {key: np.stack([b.arrays[key][i] for b, i in zip(self.batches, idx)])
            for key in first.arrays}
    return sharding.put_tree(host, self._spec), None


def _check_together(configs, workdirs) -> None:
  if not configs or len(configs) != len(workdirs):
    raise AelabError(f'train_and_evaluate_together needs one workdir per config; got '
                     f'{len(configs)} configs and {len(workdirs)} workdirs')
  strip = lambda c: {k: v for k, v in json.loads(c.to_json()).items() if k != 'seed'}  # noqa: E731
  base = strip(configs[0])
  for c, w in zip(configs[1:], workdirs[1:]):
    if strip(c) != base:
      diff = sorted(k for k in set(base) | set(strip(c)) if base.get(k) != strip(c).get(k))
      raise AelabError(f'runs train together only when their configs differ in the seed alone; '
                       f'{w} differs in {", ".join(diff)}')
  if any(how != 'replicate' for _, how in configs[0].train.sharding):
    raise AelabError('runs trained together keep their parameters replicated; train.sharding = '
                     f'{configs[0].train.sharding} places some otherwise: train them one by one')
  seeds = [c.seed for c in configs]
  if len(set(seeds)) != len(seeds) or len({str(w) for w in workdirs}) != len(workdirs):
    raise AelabError(f'runs trained together need distinct seeds and workdirs; got seeds {seeds}')


def _setups(configs, workdirs) -> list[Setup]:
  setups = [build(c, w) for c, w in zip(configs, workdirs)]
  first = setups[0]
  for s in setups[1:]:
    if s.total_steps != first.total_steps or s.forward.noise != first.forward.noise or \
        len(s.dataset.train) != len(first.dataset.train):
      raise AelabError(f'the seeds of {s.config.seed} and {first.config.seed} give different '
                       'training splits or input ranges; train these runs one by one')
  return setups


def _restore_together(setups, ckpts, workdirs):
  """Every run restored at the newest step all of them have (0: all start afresh)."""
  step = min(c.latest_step() or 0 for c in ckpts)
  while True:
    got = [workdir_lib.restore_or_init(s, c, w, step) for s, c, w in zip(setups, ckpts, workdirs)]
    steps = [int(meta.get('step', 0)) for _, _, meta in got]
    if len(set(steps)) == 1:
      for c in ckpts:  # a run that was ahead saves those steps again
        c.discard_after(steps[0])
      return got, steps[0]
    step = min(steps)  # one fell back past a corrupt checkpoint: meet it there


def train_and_evaluate_together(configs: Sequence[ml_collections.ConfigDict],
                                workdirs: Sequence[str | pathlib.Path],
                                should_stop: Callable[[int], bool] | None = None,
                                how: str = 'map') -> list[dict]:
  """Trains runs that differ only in their seed together; returns each run's summary (or
  {'step', 'interrupted', ...} for every run when SIGTERM/SIGINT or `should_stop(step)` stopped
  them; a rerun resumes). `how`: 'map' runs the runs' blocks one after the other inside the
  program (each computes exactly what it would alone), 'vmap' batches them (faster where the
  device has room to spare, e.g. a GPU and small models; the numbers differ in the last bits)."""
  if how not in ('map', 'vmap'):
    raise AelabError(f"how = {how!r}; runs train together by 'map' or 'vmap'")
  t_start = time.time()
  _check_together(configs, workdirs)
  with signals.catch():
    workdirs = [workdir_lib.check_workdir(w) for w in workdirs]
    setups = _setups(configs, workdirs)
    for w in workdirs:
      w.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
      ckpts = [stack.enter_context(checkpoint.Checkpoints(w, s.config.train.keep_checkpoints,
                                                          writer=True))
               for s, w in zip(setups, workdirs)]
      got, start = _restore_together(setups, ckpts, workdirs)
      done = [workdir_lib.finished_summary(w, start, s.total_steps)
              for s, w in zip(setups, workdirs)]
      if all(d is not None for d in done):
        return [{**d, 'already_complete': True} for d in done]
      writers = [stack.enter_context(MetricWriter(w, workdir_lib.rows_to_keep(w, meta, start)))
                 for w, (_, _, meta) in zip(workdirs, got)]
      for c, w in zip(configs, workdirs):
        write_json(w / 'config.json', json.loads(c.to_json()))
      try:
        result, prep = _train(setups, got, start, ckpts, writers, should_stop, how)
      except Diverged as e:
        raise AelabError(f'{e} (lower optimizer.learning_rate or set optimizer.grad_clip; the '
                         'runs trained together stopped with it)') from None
      out = _finish(setups, result, prep, ckpts, writers, start, t_start)
  for s, w, summary in zip(setups, workdirs, out):
    if 'interrupted' not in summary:
      write_json(w / 'summary.json', summary)
  return out


def _train(setups, got, start: int, ckpts, writers, should_stop, how: str):
  first, tc = setups[0], setups[0].config.train
  state = _stack([g[0] for g in got])
  prep = got[0][1].replace(stats=_stack([g[1].stats for g in got]))
  block = make_train_block(first.forward, first.tx, first.mesh, tc.scan_unroll, replicas=how)

  def log(step: int, row: dict) -> None:
    for r, writer in enumerate(writers):
      writer.write(step, {k: np.asarray(v)[r] if np.ndim(v) else v for k, v in row.items()})

  loop = Loop(block, StackedBatches(setups, first.mesh), steps_per_call=tc.steps_per_call,
              total_steps=first.total_steps, log_every=tc.log_every, log=log,
              learning_rate=optim.logged_rate(first.config.optimizer, first.total_steps),
              progress=tc.progress, replica_names=[str(w.directory.parent) for w in ckpts])
  pending = [g[2].get('pending_metrics') for g in got]
  if any(pending):
    loop.pending.restore({k: [p[k] for p in pending] for k in pending[0]})

  def at_boundary(step: int, state, stopping: bool) -> None:
    for r, (s, c, w) in enumerate(zip(setups, ckpts, writers)):
      workdir_lib.boundary_work(s, c, w, step, _take(state, r), _take(prep, r), stopping,
                                loop.pending.to_json(r))

  stop = lambda step: signals.received() or (  # noqa: E731
      'should_stop' if should_stop is not None and should_stop(step) else None)
  result = loop.run(state, prep, start, first.total_steps, periods=workdir_lib.periods(first),
                    at_boundary=at_boundary, should_stop=stop)
  return result, prep


def _finish(setups, result, prep, ckpts, writers, start: int, t_start: float) -> list[dict]:
  """Each run's final evaluations and summary, or its interruption."""
  def stopped(r: int, during: str) -> dict:
    return {'step': result.step, 'total_steps': setups[r].total_steps,
            'checkpoint_step': ckpts[r].latest_step(),
            'interrupted': result.stopped_by or signals.received(),
            'during': during}

  if result.stopped_by:
    return [stopped(r, 'training') for r in range(len(setups))]
  out = []
  for r, (s, w) in enumerate(zip(setups, writers)):
    state_r, prep_r = _take(result.state, r), _take(prep, r)
    results = workdir_lib.final_evaluations(s, state_r, prep_r, w, result.step)
    if results is None:
      return [stopped(q, 'evaluation') for q in range(len(setups))]
    lone = type(result)(state=state_r, step=result.step, stopped_by=None,
                        timed_steps=result.timed_steps, timed_s=result.timed_s)
    out.append({**workdir_lib.summary(s, lone, results, start, time.time() - t_start),
                'trained_with': len(setups)})
  return out
