"""Orbax checkpoints in `workdir/checkpoints`: train state, preprocessing statistics, run metadata,
verified on restore.

Each step holds the item 'arrays' ({'state', 'preprocessing'}) and the JSON item 'meta', which
also records a checksum of every array and of itself (aelab/trainer/checksums.py; orbax checks
none of the array data). A restore that fails (a missing, truncated or garbled file, a checksum
mismatch) prints one warning line and tries the previous step; the training run (the writer)
also moves that step to `workdir/checkpoints.corrupt/<step>`, while a reader (an inspection)
changes nothing in the workdir. A checkpoint of a different model (other tree, shapes or dtypes)
is not corrupt: it raises AelabError and stays where it is. Checkpoints written before checksums
were recorded restore unverified.

A save that fails (a full disk, a read-only directory), when it is started or later in orbax's
background threads (reported at the next save, `wait()` or `close()`), raises one AelabError naming
the step, the directory, the OS's reason and the space the checkpoint needs; its half-written
directory is removed and the previous checkpoint stays the one a rerun resumes from.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import pathlib
import shutil
import sys
import warnings
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from aelab.config import checks
from aelab.errors import AelabError
from aelab.trainer import checksums, orbax_output

# Orbax's JSON files; parsed before orbax reads them (a garbled one would otherwise leave orbax's
# unawaited read coroutines printing tracebacks at exit).
_JSON_FILES = ('meta/metadata', 'arrays/_METADATA', 'arrays/_sharding', 'arrays/array_metadatas/*')


class _Corrupt(Exception):
  """A checkpoint step that does not read back as written; the message is the short reason."""


class Checkpoints:
  """Keeps the last `keep` checkpoints; each holds {'state', 'preprocessing'} arrays and JSON meta.

  Use as a context manager (or call close()) so an error after a save still finishes it.
  """

  def __init__(self, workdir: str | pathlib.Path, keep: int = 3, writer: bool = False):
    """`writer`: the run that trains into `workdir`: only it saves, creates `checkpoints/`, moves
    corrupt steps aside and removes the half-written steps a killed run left behind. A reader (an
    inspection) leaves the workdir exactly as it was."""
    checks.integer(keep, 'train.keep_checkpoints', low=1,
                   hint=': resuming needs at least the latest checkpoint')
    self.directory = pathlib.Path(workdir).absolute() / 'checkpoints'
    self.corrupt_directory = self.directory.with_name('checkpoints.corrupt')
    self.writer = writer
    self._closed = False
    self._saving: tuple[int, int] | None = None  # (step, bytes) of the save in flight
    if writer:
      orbax_output.HELD.dropping = False
      logging.getLogger('absl').addFilter(orbax_output.HELD)  # the same object: added once
      orbax_output.hush_leftovers()  # a failed save's other writes end as a failed read's do
    with orbax_output.quiet():  # orbax logs an ERROR for a garbled _CHECKPOINT_METADATA (commit time only)
      self._manager = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(max_to_keep=int(keep), create=writer,
                                               cleanup_tmp_directories=writer),
          item_handlers={'arrays': ocp.StandardCheckpointHandler(),
                         'meta': ocp.JsonCheckpointHandler()})

  def __enter__(self) -> Checkpoints:
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    try:
      self.close()
    except AelabError:
      # A failed save says what a rerun resumes from: it outranks the OSError of another write (a
      # full disk fails both). Any other error on its way out stays the one to report.
      if exc_type is None or issubclass(exc_type, OSError):
        raise
    except Exception:
      if exc_type is None:
        raise

  def latest_step(self) -> int | None:
    """The newest step on disk (unverified: `restore` may fall back to an older one)."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def discard_after(self, step: int) -> None:
    """Deletes the checkpoints after `step` (a run resumed from an older step saves them anew)."""
    self._check_writer('discard_after')
    for s in self.all_steps():
      if s > step:
        self._manager.delete(s)

  def save(self, step: int, arrays: Any, meta: dict) -> None:
    """Saves asynchronously (`wait()`, `close()` or the next save makes it durable); the saved meta
    is a copy of `meta` plus the arrays' checksums, computed on their devices. A failed write
    raises AelabError, here or where it surfaces (see the module doc)."""
    self._check_writer('save')
    self.wait()  # the previous save: a failure of it is reported as that step's
    meta = checksums.record(meta, arrays)
    self._saving = (int(step), sum(int(getattr(a, 'nbytes', 0)) for a in jax.tree.leaves(arrays)))
    with self._reporting():
      self._manager.save(int(step), args=ocp.args.Composite(
          arrays=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, abstract_arrays: Any, step: int | None = None) -> tuple[int, Any, dict]:
    """(step, arrays, meta) of the newest good checkpoint (the newest <= `step` if given), restored
    onto the shardings of `abstract_arrays` (a pytree of jax.ShapeDtypeStruct) and verified."""
    want = checksums.layout(abstract_arrays)

    def load(s: int) -> tuple[Any, dict]:
      meta = self._read_meta(s)
      have = checksums.recorded_layout(meta) if checksums.KEY in meta else \
          checksums.layout(self._item_metadata(s))
      diff = checksums.layout_difference(have, want)
      if diff:
        raise AelabError(f'checkpoint {s} in {self.directory} holds a different model ({diff}): '
                         'resume with the config it was trained with, or use a new workdir')
      arrays = self._read_arrays(s, abstract_arrays)
      _verify(meta, lambda: checksums.sums(arrays))
      return arrays, meta

    return self._first_good(step, load, explicit=False)

  def restore_raw(self, step: int | None = None) -> tuple[int, Any, dict]:
    """Like `restore`, but the arrays come back as host numpy arrays in their saved structure
    (dicts and lists), on any machine: a checkpoint written on 8 devices or a GPU reads back on
    one CPU. An explicit `step` that is corrupt raises AelabError (no fallback)."""

    def load(s: int) -> tuple[Any, dict]:
      meta = self._read_meta(s)
      tree = self._item_metadata(s)
      if checksums.KEY in meta and checksums.layout(tree) != checksums.recorded_layout(meta):
        raise _Corrupt('array metadata differs from the recorded layout')
      arrays = self._read_arrays(s, jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree))
      _verify(meta, lambda: checksums.host_sums(arrays))
      return arrays, meta

    return self._first_good(step, load, explicit=step is not None)

  def restore_meta(self, step: int) -> dict:
    """The JSON meta of `step` (checked when it carries checksums)."""
    try:
      with orbax_output.quiet():
        return checksums.strip(self._read_meta(step))
    except _Corrupt as e:
      raise AelabError(f'checkpoint {step} in {self.directory} is corrupt ({e})') from None

  def wait(self) -> None:
    """Blocks until in-flight saves are durable."""
    with self._reporting():
      self._manager.wait_until_finished()
    self._saving = None
    orbax_output.HELD.release()

  def close(self) -> None:
    """Waits for in-flight saves, then closes; safe to call twice."""
    if self._closed:
      return
    self._closed = True
    try:
      self.wait()
    except BaseException:
      with contextlib.suppress(Exception):  # the failed save is the error to report
        self._manager.close()
      raise
    self._manager.close()

  def _check_writer(self, what: str) -> None:
    if not self.writer:
      raise ValueError(f'Checkpoints.{what}: this Checkpoints only reads (writer=False)')

  @contextlib.contextmanager
  def _reporting(self):
    """Turns a failure of the save in flight, whatever orbax raised, into one AelabError."""
    try:
      yield
    except (MemoryError, jax.errors.JaxRuntimeError):
      raise  # out of memory, or a lost peer (distributed.exit_if_peer_lost): not the write's fault
    except Exception as e:
      if self._saving is None:
        raise
      (step, size), self._saving = self._saving, None
      orbax_output.HELD.drop()
      raise AelabError(self._write_error(step, size, e)) from None

  def _write_error(self, step: int, size: int, e: Exception) -> str:
    """The one line for a failed save of `step`, once its half-written directory is removed."""
    if jax.process_index() == 0:  # the process that created it (orbax's primary host)
      for partial in self.directory.glob(f'{step}.orbax-checkpoint-tmp*'):
        shutil.rmtree(partial, ignore_errors=True)
    code, reason = orbax_output.os_reason(e)
    full = code in (errno.ENOSPC, errno.EDQUOT)
    space = f' (the checkpoint needs about {orbax_output.size(size)}; {orbax_output.free(self.directory)})' if full else ''
    last = max((s for s in self.all_steps() if s < step), default=None)
    resume = f'resume from step {last}' if last is not None else 'start again from step 0'
    return (f'could not write checkpoint {step} in {self.directory}: {reason}{space}; '
            f'{"free some space" if full else "fix that"} and rerun the same command to {resume}')

  def _first_good(self, step: int | None, load: Callable, explicit: bool) -> tuple[int, Any, dict]:
    self.wait()
    orbax_output.hush_leftovers()
    with orbax_output.quiet():
      self._manager.reload()
    steps = self.all_steps()
    if explicit and step not in steps:
      raise AelabError(f'no checkpoint at step {step} in {self.directory}; available steps: '
                       f'{", ".join(map(str, steps)) or "none"}')
    candidates = [s for s in reversed(steps) if step is None or s <= step]
    if not candidates:
      at = '' if step is None else f' at or before step {step}'
      raise AelabError(f'no checkpoint{at} in {self.directory}; train (or resume) first')
    failed, warnings = [], []  # a warning per corrupt step, printed once one restores
    for i, s in enumerate(candidates):
      try:
        with orbax_output.quiet():
          arrays, meta = load(s)
        for line in warnings:
          print(line, file=sys.stderr, flush=True)
        return s, arrays, checksums.strip(meta)
      except _Corrupt as e:
        if explicit:
          raise AelabError(f'checkpoint {s} in {self.directory} is corrupt ({e}); pick another '
                           f'step ({", ".join(str(t) for t in steps if t != s) or "none left"})') \
              from None
        failed.append(f'{s} ({e})')
        left = f'using step {candidates[i + 1]}' if i + 1 < len(candidates) else 'none left'
        done = self._quarantine(s) if self.writer else 'left in place'
        warnings.append(f'aelab: warning: checkpoint {s} in {self.directory} is corrupt ({e}); '
                        f'{done}; {left}')
    raise AelabError(self._none_usable(failed))  # the one line names every corrupt step

  def _none_usable(self, failed: list[str]) -> str:
    corrupt = f'{", ".join(failed)} {"is" if len(failed) == 1 else "are"} corrupt'
    if not self.writer:
      return (f'no usable checkpoint in {self.directory}: {corrupt} (left in place); rerunning '
              f'the training moves them to {self.corrupt_directory} and trains from step 0, or '
              f'put a good copy back into {self.directory}')
    return (f'no usable checkpoint in {self.directory}: {corrupt} and moved to '
            f'{self.corrupt_directory}; start the run again (it trains from step 0), or put a '
            f'good copy back into {self.directory}')

  def _read_meta(self, s: int) -> dict:
    root = self.directory / str(s)
    for pattern in _JSON_FILES:
      for f in sorted(root.glob(pattern)):
        try:
          json.loads(f.read_text())
        except (OSError, ValueError) as e:
          raise _Corrupt(f'{f.relative_to(root)} unreadable: {type(e).__name__}') from None
    meta = self._orbax(s, 'meta', lambda: self._manager.restore(
        s, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta'])
    if not isinstance(meta, dict):
      raise _Corrupt('meta is not a JSON object')
    why = checksums.check_meta(meta) if checksums.KEY in meta else None
    if why:
      raise _Corrupt(why)
    return meta

  def _item_metadata(self, s: int) -> Any:
    tree = self._orbax(s, 'array metadata', lambda: self._manager.item_metadata(s)['arrays'])
    return getattr(tree, 'tree', tree)

  def _read_arrays(self, s: int, target: Any) -> Any:
    return self._orbax(s, 'array data', lambda: self._manager.restore(
        s, args=ocp.args.Composite(arrays=ocp.args.StandardRestore(target)))['arrays'])

  def _orbax(self, s: int, what: str, read: Callable) -> Any:
    """read(), with any failure but running out of memory taken as corruption of step `s`."""
    try:
      return read()
    except (MemoryError, jax.errors.JaxRuntimeError):
      raise  # out of host or device memory is not the checkpoint's fault
    except Exception as e:
      # orbax's read coroutines that the failure abandoned warn when collected, just after this
      warnings.filterwarnings('ignore', r"coroutine '.*' was never awaited", RuntimeWarning)
      raise _Corrupt(orbax_output.reason(what, e, self.directory / str(s))) from None

  def _quarantine(self, s: int) -> str:
    """Moves step `s` out of the manager's directory so the step number can be saved again."""
    if jax.process_index() != 0:
      return 'left for process 0 to move'
    dest, n = self.corrupt_directory / str(s), 1
    while dest.exists():
      n += 1
      dest = self.corrupt_directory / f'{s}.{n}'
    try:
      self.corrupt_directory.mkdir(exist_ok=True)
      shutil.move(self.directory / str(s), dest)
      return f'moved to {dest}'
    except OSError as e:
      return f'left in place (cannot move it: {e.strerror or type(e).__name__})'
    finally:
      with orbax_output.quiet():
        self._manager.reload()


def _verify(meta: dict, actual: Callable[[], dict[str, int]]) -> None:
  """Checks the restored arrays' checksums against those recorded (old checkpoints have none)."""
  why = checksums.mismatch(meta, actual()) if checksums.KEY in meta else None
  if why:
    raise _Corrupt(why)


def abstract(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) of a pytree of jax arrays."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), tree)
