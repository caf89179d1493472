"""Runs that differ only in their seed, trained together in one jitted program, and the one
run alone, as the driver (aelab/trainer/train.py) sees them: `Runs`.

    summaries = train.train_together(configs, workdirs, how='map')

Each run keeps everything its seed decides: its data split and batch order, its preprocessing
statistics, its initial parameters and its noise. Their states are stacked on a leading axis and
the trainer's own train block is vmapped ('vmap') or mapped ('map') over it
(aelab/trainer/state.py), inside the one block loop (aelab/trainer/loop.py). Every workdir is
written as a lone run of that config writes it, so `python -m aelab.run` and
`python -m aelab.inspect` read each one as usual, and a rerun resumes them together from the
newest step every one of them has.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from aelab.errors import AelabError
from aelab.trainer import sharding, workdir as workdir_lib
from aelab.trainer.batches import Keys, Rows, Streamed
from aelab.trainer.setup import Setup
from aelab.trainer.state import make_train_block, stack as _stack, take as _take


class Runs:
  """One run, or runs stacked on a leading axis: their state, preprocessing, train block,
  batches and logging, for the driver."""

  def __init__(self, setups: list[Setup], got: list, how: str):
    self.setups, self.how, self.together = setups, how, len(setups) > 1
    self.state = _stack([g[0] for g in got]) if self.together else got[0][0]
    self.prep = (got[0][1].replace(stats=_stack([g[1].stats for g in got])) if self.together
                 else got[0][1])
    self._pending = [g[2].get('pending_metrics') for g in got]

  def take(self, tree, r: int):
    return _take(tree, r) if self.together else tree

  def block(self):
    first = self.setups[0]
    if not self.together:
      return first.train_block()
    return make_train_block(first.forward, first.tx, first.mesh, first.config.train.scan_unroll,
                            replicas=self.how)

  def batches(self):
    return StackedBatches(self.setups, self.setups[0].mesh) if self.together \
        else self.setups[0].batches

  def logger(self, writers):
    if not self.together:
      return writers[0].write

    def log(step: int, row: dict) -> None:
      for r, writer in enumerate(writers):
        writer.write(step, {k: np.asarray(v)[r] if np.ndim(v) else v for k, v in row.items()})
    return log

  def names(self, ckpts) -> list[str] | None:
    return [str(c.directory.parent) for c in ckpts] if self.together else None

  def restore_pending(self, pending) -> None:
    if not self.together:
      pending.restore(self._pending[0])
    elif any(self._pending):
      pending.restore({k: [p[k] for p in self._pending] for k in self._pending[0]})

  def pending_json(self, loop, r: int) -> dict:
    return loop.pending.to_json(r if self.together else None)


class StackedBatches:
  """Every replica's batches of a block, stacked: its own rows of its own training split (or its
  own stream's generator and key)."""

  def __init__(self, setups: Sequence[Setup], mesh):
    self.batches = [s.batches for s in setups]
    self.on_device = self.batches[0].on_device
    self._spec = sharding.batch_sharding(mesh, 2)
    self._streamed = isinstance(self.batches[0], Streamed)
    arrays = [b.stream.arrays if self._streamed else b.arrays for b in self.batches]
    self._device = sharding.put_tree(_stack(arrays), sharding.replicated(mesh)) \
        if self.on_device else None
    self._rows_key, self._rows = None, None
    if self._streamed:
      self._keys = sharding.put(np.stack([np.asarray(b.key) for b in self.batches]),
                                sharding.replicated(mesh))

  def block(self, start: int, k: int):
    first = self.batches[0]
    if self._streamed:
      return self._device, Keys(self._keys, k, first.batch_size, first.stream.sample)
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


def check_together(configs, workdirs, how: str, init_params) -> None:
  """Runs train together when they differ in their seed alone (distinct seeds and workdirs),
  their parameters are replicated and none is given pretrained layers."""
  if how not in ('map', 'vmap'):
    raise AelabError(f"how = {how!r}; runs train together by 'map' or 'vmap'")
  if len(configs) != len(workdirs):
    raise AelabError(f'runs trained together need one workdir per config; got {len(configs)} '
                     f'configs and {len(workdirs)} workdirs')
  if init_params:
    raise AelabError('runs trained together start from their own seeds; init_params is for a '
                     'lone run')
  strip = lambda c: {k: v for k, v in json.loads(c.to_json()).items() if k != 'seed'}  # noqa: E731
  base = strip(configs[0])
  for c, w in zip(configs[1:], workdirs[1:]):
    if strip(c) != base:
      diff = sorted(k for k in set(base) | set(strip(c)) if base.get(k) != strip(c).get(k))
      raise AelabError(f'runs train together only when their configs differ in the seed alone; '
                       f'{w} differs in {", ".join(diff)}')
  if any(rule != 'replicate' for _, rule in configs[0].train.sharding):
    raise AelabError('runs trained together keep their parameters replicated; train.sharding = '
                     f'{configs[0].train.sharding} places some otherwise: train them one by one')
  seeds = [c.seed for c in configs]
  if len(set(seeds)) != len(seeds) or len({str(w) for w in workdirs}) != len(workdirs):
    raise AelabError(f'runs trained together need distinct seeds and workdirs; got seeds {seeds}')


def check_setups(setups: list[Setup]) -> None:
  """The seeds must give runs of the same length, training split size and input noise."""
  first = setups[0]
  if len(setups) > 1 and first.dataset.shards is not None:
    raise AelabError('runs trained together (--seeds_together) stack their training sets in '
                     'memory; a directory of .npy shards is read from disk: train these runs one '
                     'by one')
  for s in setups[1:]:
    if s.total_steps != first.total_steps or s.forward.noise != first.forward.noise or \
        len(s.dataset.train) != len(first.dataset.train):
      raise AelabError(f'the seeds of {s.config.seed} and {first.config.seed} give different '
                       'training splits or input ranges; train these runs one by one')


def restore(setups, ckpts, workdirs, given: dict | None = None):
  """([(state, prep, meta)] of every run, the step they start from): each restored at the
  newest step all of them have (0: all start afresh, a lone run with the `given` parameters)."""
  if len(setups) == 1:
    got = [workdir_lib.restore_or_init(setups[0], ckpts[0], workdirs[0], given=given)]
    return got, int(got[0][2].get('step', 0))
  step = min(c.latest_step() or 0 for c in ckpts)
  while True:
    got = [workdir_lib.restore_or_init(s, c, w, step) for s, c, w in zip(setups, ckpts, workdirs)]
    steps = [int(meta.get('step', 0)) for _, _, meta in got]
    if len(set(steps)) == 1:
      for c in ckpts:  # a run that was ahead saves those steps again
        c.discard_after(steps[0])
      return got, steps[0]
    step = min(steps)  # one fell back past a corrupt checkpoint: meet it there
