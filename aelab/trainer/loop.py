"""The block loop: dispatch, lagged finiteness check, logging, stop requests.

`Loop.run` advances the state from `start` to `end` in blocks of `steps_per_call` steps, cut
so that every boundary (a multiple of log_every or of one of `periods`, the last step, a stop)
ends a block. Block i is dispatched before block i-1's outputs are checked on the host, so the
device never waits for the host between boundaries. At a boundary every pending block is
checked first (loss finite, parameters and optimizer state finite), then the train metrics are
logged (log steps and the last step), then `at_boundary(step, state, stopping)` runs (the
trainer's evaluations and checkpoints): nothing is saved that was not checked.
The benchmark (aelab/bench) times this same loop.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np
import tqdm

from aelab.errors import AelabError
from aelab.trainer.pending import Pending
from aelab.trainer.state import all_finite

_NORMS = ('grad_norm', 'param_norm')
_PER_BLOCK = (*_NORMS, 'finite')  # block outputs that are not per step


@jax.jit
def _finite_state(state) -> jax.Array:
  return all_finite((state.params, state.opt_state))


class Diverged(AelabError):
  """The loss, the parameters or the optimizer state stopped being finite (`replica`: which one,
  () when one run trains alone)."""

  def __init__(self, message: str, replica=()):
    super().__init__(message)
    self.replica = tuple(int(r) for r in replica)


@dataclasses.dataclass
class Result:
  state: object
  step: int
  stopped_by: str | None   # 'SIGTERM', 'SIGINT', 'should_stop' or None
  timed_steps: int         # steps timed (from the first sync after the first block)
  timed_s: float           # their seconds, boundary work (evaluations, checkpoints) excluded


class Loop:
  def __init__(self, train_block, batches, *, steps_per_call: int, total_steps: int,
               log_every: int, log: Callable[[int, dict], None] | None = None,
               learning_rate: Callable[[int], float] | None = None, progress: bool = False,
               replica_names: Sequence[str] | None = None):
    self.train_block, self.batches = train_block, batches
    self.k, self.total, self.log_every = steps_per_call, total_steps, log_every
    self.log, self.learning_rate, self.progress = log, learning_rate, progress
    self.replica_names = replica_names  # replicas trained together: their names, for messages
    self.pending = Pending()

  def _block_size(self, step: int, end: int, periods: Sequence[int]) -> int:
    return min(self.k, end - step, *(n - step % n for n in (self.log_every, *periods) if n > 0))

  def _boundary(self, step: int, periods: Sequence[int]) -> bool:
    """Whether `step` ends a block where the loop logs or runs its hook (and so checks the state
    and takes the norms first)."""
    return step == self.total or any(n > 0 and step % n == 0 for n in (self.log_every, *periods))

  def _check(self, first: int, out: dict) -> None:
    # np.asarray, not jax.device_get: a tenth of its host cost per small array (30 us here)
    loss, finite = np.asarray(out['loss']), np.asarray(out['finite'])
    bad = np.argwhere(~np.isfinite(loss))  # [[step]], or [[replica, step]] for replicas
    if bad.size:
      raise Diverged(f'training stopped: the loss is {loss[tuple(bad[0])]} at step '
                     f'{first + bad[0][-1]}{self._of(bad[0][:-1])}', bad[0][:-1])
    unfinite = np.argwhere(~np.asarray(finite))
    if unfinite.size or not np.all(finite):
      raise Diverged(f'training stopped: the parameters or optimizer state hold inf or NaN after '
                     f'step {first + loss.shape[-1] - 1}{self._of(unfinite[0] if unfinite.size else ())},'
                     ' though the loss was still finite', unfinite[0] if unfinite.size else ())

  def _of(self, replica) -> str:
    """' in <name>' of replica (index) when replicas train together, else ''."""
    return f' in {self.replica_names[int(replica[0])]}' if len(replica) and self.replica_names else ''

  @staticmethod
  def _mean(values) -> float | np.ndarray:
    mean = np.mean(values, axis=-1)  # over the steps since the last log; per replica
    return float(mean) if mean.ndim == 0 else mean

  def _write_log(self, step: int, last: dict) -> dict:
    values = self.pending.take()
    row = {f'train/{k}': self._mean(v) for k, v in values.items()}
    row.update({f'train/{k}': self._mean(np.asarray(last[k])[..., None]) for k in _NORMS})
    if self.learning_rate is not None:
      row['train/learning_rate'] = float(self.learning_rate(step - 1))
    if self.log is not None:
      self.log(step, row)
    return row

  def run(self, state, prep, start: int, end: int, *, periods: Sequence[int] = (),
          at_boundary: Callable[[int, object, bool], None] | None = None,
          should_stop: Callable[[int], str | None] = lambda step: None) -> Result:
    step, unchecked, last = start, [], None
    clock, timed_from, untimed, stopped = None, start, 0.0, should_stop(start)
    bar = tqdm.tqdm(total=self.total, initial=start, unit='step', dynamic_ncols=True,
                    disable=not self.progress or bool(stopped))
    while step < end and not stopped:
      k = self._block_size(step, end, periods)
      check = self._boundary(step + k, periods)
      state, out = self.train_block(state, prep, *self.batches.block(step, k), check)
      if unchecked:  # check the previous block while this one runs
        self._check(*unchecked.pop())
      unchecked.append((step, out))
      self.pending.add({key: v for key, v in out.items() if key not in _PER_BLOCK})
      last, step = out, step + k
      bar.update(k)
      stopping = should_stop(step)
      log_due = (self.log_every > 0 and step % self.log_every == 0) or step == self.total
      hook_due = any(step % n == 0 for n in periods if n > 0) or step == self.total
      if not (log_due or hook_due or stopping or step == end):
        continue
      for first_and_out in unchecked:
        self._check(*first_and_out)
      unchecked = []
      if stopping and not check and not bool(_finite_state(state)):  # not checked in the block
        raise Diverged(f'training stopped: the parameters or optimizer state hold inf or NaN '
                       f'at step {step}, though the loss was still finite')
      if clock is None:  # time from the first sync after the first (compiling) block
        clock, timed_from = time.time(), step
      if log_due:
        row = self._write_log(step, {k: np.asarray(last[k]) for k in _NORMS})
        bar.set_postfix(loss=f'{np.mean(row["train/loss"]):.4g}')
      if at_boundary is not None and (hook_due or stopping):
        t = time.time()
        at_boundary(step, state, bool(stopping))
        untimed += time.time() - t
      if stopping:
        stopped = stopping
        break
    bar.close()
    timed_s = time.time() - clock - untimed if clock is not None else 0.0
    return Result(state=state, step=step, stopped_by=stopped or None,
                  timed_steps=step - timed_from, timed_s=timed_s)
