"""The block loop: dispatch, finiteness checks, logging, stop requests.

`Loop.run` advances the state from `start` to `end` in blocks of `steps_per_call` steps, cut
so that every boundary (a multiple of log_every or of one of `periods`, the last step, a stop)
ends a block. Between boundaries the loop only dispatches blocks, checking the ones already run
on the host (their loss finite) about once a second (CHECK_EVERY_S) while the newest runs, so the
device never waits for the host. At a boundary every pending block is
checked first (loss finite, parameters and optimizer state finite), then the train metrics are
logged (log steps and the last step), then `at_boundary(step, state, stopping)` runs (the
trainer's evaluations and checkpoints): nothing is saved that was not checked. At a log step
where nothing else is due, the check and the log wait until the next block is dispatched, so
that the device does not wait for them either.
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

# Between boundaries the blocks already dispatched are checked at most this often: a non-finite
# loss stops the run within about this time, and the host runs at most about this far ahead of
# the devices. Checking every block cost about 1% of the dense benchmark's speed (a host copy of
# each block's loss, competing with the block for the CPU).
CHECK_EVERY_S = 1.0
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
  timed_steps: int         # steps timed (after the first block; 0 for a run of one block)
  timed_s: float           # their seconds, boundary work (evaluations, checkpoints) excluded


class _Bar:
  """The progress bar, drawn from the first finished block on: a config that fails while the
  first block compiles (an error found only in tracing) prints its one line and no bar."""

  def __init__(self, **kwargs):
    self.kwargs, self.bar = kwargs, None

  def update(self, k: int) -> None:
    if self.bar is None:
      self.bar = tqdm.tqdm(**self.kwargs)
    self.bar.update(k)

  def set_postfix(self, **kwargs) -> None:
    if self.bar is not None:
      self.bar.set_postfix(**kwargs)

  def close(self, leave: bool = True) -> None:
    if self.bar is not None:
      self.bar.leave = leave
      self.bar.close()


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

  def _check(self, first: int, out: dict, checked: bool) -> None:
    """`checked`: whether the block took 'finite' (else it is True, and not fetched)."""
    # np.asarray, not jax.device_get: a tenth of its host cost per small array (30 us here)
    loss = np.asarray(out['loss'])
    bad = np.argwhere(~np.isfinite(loss))  # [[step]], or [[replica, step]] for replicas
    if bad.size:
      raise Diverged(f'training stopped: the loss is {loss[tuple(bad[0])]} at step '
                     f'{first + bad[0][-1]}{self._of(bad[0][:-1])}', bad[0][:-1])
    if not checked:
      return
    finite = np.asarray(out['finite'])
    unfinite = np.argwhere(~finite)
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

  def _settle(self, log_step: int | None, unchecked: list, last: dict, bar) -> None:
    """Checks the unchecked blocks (waiting for them), then logs `log_step` (None: no log) from
    the pending metrics and the norms of `last`, the block that ends there."""
    for block in unchecked:
      self._check(*block)
    if log_step is not None:
      row = self._write_log(log_step, {k: np.asarray(last[k]) for k in _NORMS})
      bar.set_postfix(loss=f'{np.mean(row["train/loss"]):.4g}')

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
    stopped = should_stop(start)
    bar = _Bar(total=self.total, initial=start, unit='step', dynamic_ncols=True,
               disable=not self.progress or bool(stopped))
    try:
      return self._blocks(state, prep, start, end, periods, at_boundary, should_stop, stopped,
                          bar)
    except BaseException:
      bar.close(leave=False)  # an error's line never shares its line with the bar
      raise

  def _blocks(self, state, prep, start: int, end: int, periods, at_boundary, should_stop,
              stopped, bar) -> Result:
    step, unchecked, last, next_check = start, [], None, time.monotonic() + CHECK_EVERY_S
    clock, timed_from, untimed = None, start, 0.0
    deferred = None  # a log step (nothing else due) whose blocks are settled once the next runs
    while step < end and not stopped:
      k = self._block_size(step, end, periods)
      check = self._boundary(step + k, periods)
      state, out = self.train_block(state, prep, *self.batches.block(step, k), check)
      if deferred is not None:  # check and log the blocks up to it while this one runs
        self._settle(deferred, unchecked, last, bar)
        unchecked, deferred, next_check = [], None, time.monotonic() + CHECK_EVERY_S
      unchecked.append((step, out, check))
      self.pending.add({key: v for key, v in out.items() if key not in _PER_BLOCK})
      last, step = out, step + k
      bar.update(k)
      if clock is None and step < end:  # time from the end of the first (compiling) block
        self._settle(None, unchecked, last, bar)
        unchecked, clock, timed_from = [], time.time(), step
      stopping = should_stop(step)
      log_due = (self.log_every > 0 and step % self.log_every == 0) or step == self.total
      hook_due = any(step % n == 0 for n in periods if n > 0) or step == self.total
      if not (log_due or hook_due or stopping or step == end):
        if time.monotonic() >= next_check:  # the blocks before this one, while it runs
          self._settle(None, unchecked[:-1], last, bar)
          unchecked, next_check = unchecked[-1:], time.monotonic() + CHECK_EVERY_S
        continue
      if not (hook_due or stopping or step == end):
        deferred = step  # a log step alone: the device need not wait for the host
        continue
      self._settle(step if log_due else None, unchecked, last, bar)
      unchecked, next_check = [], time.monotonic() + CHECK_EVERY_S
      if stopping and not check and not bool(_finite_state(state)):  # not checked in the block
        raise Diverged(f'training stopped: the parameters or optimizer state hold inf or NaN '
                       f'at step {step}, though the loss was still finite')
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
