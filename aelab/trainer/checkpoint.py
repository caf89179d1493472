"""Orbax checkpoints in `workdir/checkpoints`: train state, preprocessing statistics, run metadata,
verified on restore.

Each step holds the item 'arrays' ({'state', 'preprocessing'}) and the JSON item 'meta', which
also records a checksum of every array and of itself (aelab/trainer/checksums.py; orbax checks
none of the array data). A restore that fails (a missing, truncated or garbled file, a checksum
mismatch) moves that step to `workdir/checkpoints.corrupt/<step>`, prints one warning line and
tries the previous step. A checkpoint of a different model (other tree, shapes or dtypes) is not
corrupt: it raises AelabError and stays where it is. Checkpoints written before checksums were
recorded restore unverified.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pathlib
import re
import shutil
import sys
import threading
import warnings
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from aelab.errors import AelabError
from aelab.trainer import checksums

# Orbax's JSON files; parsed before orbax reads them (a garbled one would otherwise leave orbax's
# unawaited read coroutines printing tracebacks at exit).
_JSON_FILES = ('meta/metadata', 'arrays/_METADATA', 'arrays/_sharding', 'arrays/array_metadatas/*')


class _Corrupt(Exception):
  """A checkpoint step that does not read back as written; the message is the short reason."""


@contextlib.contextmanager
def _quiet():
  """Holds back orbax's absl log lines while a possibly corrupt checkpoint is read."""
  logger = logging.getLogger('absl')
  level = logger.level
  logger.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    logger.setLevel(level)


def _abandoned_read(text: str, frames: set[str]) -> bool:
  reader = '_read_array_index_and_device_put'
  return ('call_soon_threadsafe' in frames and 'Event loop is closed' in text) or \
      reader in text or reader in frames or \
      ('never retrieved' in text and ('orbax' in text or 'OCDBT' in text))


def _frames(tb) -> set[str]:
  """The function names of a traceback's frames."""
  names = set()
  while tb is not None:
    names.add(tb.tb_frame.f_code.co_name)
    tb = tb.tb_next
  return names


def _hush_orbax_leftovers() -> None:
  """After a failed read, orbax's abandoned reads end on a closed event loop, and Python prints
  their tracebacks later (sys.unraisablehook, asyncio's 'exception was never retrieved' log, a
  thread's excepthook), possibly at exit. Installed once, this drops exactly those and passes
  everything else on."""
  previous = sys.unraisablehook
  if getattr(previous, 'aelab_hush', False):
    return

  def hook(u):
    if not _abandoned_read(f'{u.exc_value} {getattr(u.object, "__qualname__", "")}',
                           _frames(u.exc_traceback)):
      previous(u)

  previous_thread_hook = threading.excepthook

  def thread_hook(args):
    if not _abandoned_read(str(args.exc_value), _frames(args.exc_traceback)):
      previous_thread_hook(args)

  hook.aelab_hush = True
  sys.unraisablehook = hook
  threading.excepthook = thread_hook
  logging.getLogger('asyncio').addFilter(_asyncio_filter)  # added once: it is the same object


def _asyncio_filter(r: logging.LogRecord) -> bool:
  exc = r.exc_info[1] if r.exc_info else None
  return not _abandoned_read(f'{r.getMessage()} {exc if exc is not None else ""}',
                             _frames(r.exc_info[2]) if r.exc_info else set())


def _reason(what: str, e: BaseException, root: pathlib.Path) -> str:
  """'array data unreadable: DATA_LOSS in arrays/d/1f0e...' from a tensorstore/orbax error."""
  text = ' '.join(str(x) for x in (e, e.__cause__, e.__context__) if x is not None)
  code = re.search(r'\b([A-Z]+_[A-Z_]+)\b', text)
  files = [pathlib.Path(f) for f in re.findall(r'local file "([^"]+)"', text)]
  where = f' in {files[-1].relative_to(root)}' if files and files[-1].is_relative_to(root) else ''
  return f'{what} unreadable: {code.group(1) if code else type(e).__name__}{where}'


class Checkpoints:
  """Keeps the last `keep` checkpoints; each holds {'state', 'preprocessing'} arrays and JSON meta.

  Use as a context manager (or call close()) so an error after a save still finishes it.
  """

  def __init__(self, workdir: str | pathlib.Path, keep: int = 3, writer: bool = False):
    """`writer`: the run that trains into `workdir` (not an inspection of it): it also removes
    the half-written steps a killed run left behind."""
    if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 1:
      raise AelabError(f'train.keep_checkpoints must be an integer >= 1 (got {keep!r}): '
                       'resuming needs at least the latest checkpoint')
    self.directory = pathlib.Path(workdir).absolute() / 'checkpoints'
    self.corrupt_directory = self.directory.with_name('checkpoints.corrupt')
    self._closed = False
    with _quiet():  # orbax logs an ERROR for a garbled _CHECKPOINT_METADATA (commit time only)
      self._manager = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(max_to_keep=int(keep), create=True,
                                               cleanup_tmp_directories=writer),
          item_handlers={'arrays': ocp.StandardCheckpointHandler(),
                         'meta': ocp.JsonCheckpointHandler()})

  def __enter__(self) -> Checkpoints:
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    try:
      self.close()
    except Exception:  # the error already on its way out is the one to report
      if exc_type is None:
        raise

  def latest_step(self) -> int | None:
    """The newest step on disk (unverified: `restore` may fall back to an older one)."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def discard_after(self, step: int) -> None:
    """Deletes the checkpoints after `step` (a run resumed from an older step saves them anew)."""
    for s in self.all_steps():
      if s > step:
        self._manager.delete(s)

  def save(self, step: int, arrays: Any, meta: dict) -> None:
    """Saves asynchronously (`wait()`, `close()` or the next save makes it durable); the saved meta
    is a copy of `meta` plus the arrays' checksums, computed on their devices."""
    meta = checksums.record(meta, arrays)
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
      with _quiet():
        return checksums.strip(self._read_meta(step))
    except _Corrupt as e:
      raise AelabError(f'checkpoint {step} in {self.directory} is corrupt ({e})') from None

  def wait(self) -> None:
    """Blocks until in-flight saves are durable."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for in-flight saves, then closes; safe to call twice."""
    if not self._closed:
      self._closed = True
      self._manager.close()

  def _first_good(self, step: int | None, load: Callable, explicit: bool) -> tuple[int, Any, dict]:
    self.wait()
    _hush_orbax_leftovers()
    with _quiet():
      self._manager.reload()
    steps = self.all_steps()
    if explicit and step not in steps:
      raise AelabError(f'no checkpoint at step {step} in {self.directory}; available steps: '
                       f'{", ".join(map(str, steps)) or "none"}')
    candidates = [s for s in reversed(steps) if step is None or s <= step]
    if not candidates:
      at = '' if step is None else f' at or before step {step}'
      raise AelabError(f'no checkpoint{at} in {self.directory}; train (or resume) first')
    failed = []
    for i, s in enumerate(candidates):
      try:
        with _quiet():
          arrays, meta = load(s)
        return s, arrays, checksums.strip(meta)
      except _Corrupt as e:
        if explicit:
          raise AelabError(f'checkpoint {s} in {self.directory} is corrupt ({e}); pick another '
                           f'step ({", ".join(str(t) for t in steps if t != s) or "none left"})') \
              from None
        failed.append(f'{s} ({e})')
        left = f'using step {candidates[i + 1]}' if i + 1 < len(candidates) else 'none left'
        print(f'aelab: warning: checkpoint {s} in {self.directory} is corrupt ({e}); '
              f'{self._quarantine(s)}; {left}', file=sys.stderr, flush=True)
    raise AelabError(f'no usable checkpoint in {self.directory}: {", ".join(failed)} '
                     f'{"is" if len(failed) == 1 else "are"} corrupt and moved to '
                     f'{self.corrupt_directory}; start the run again (it trains from step 0), or '
                     f'put a good copy back into {self.directory}')

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
      raise _Corrupt(_reason(what, e, self.directory / str(s))) from None

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
      with _quiet():
        self._manager.reload()


def _verify(meta: dict, actual: Callable[[], dict[str, int]]) -> None:
  """Checks the restored arrays' checksums against those recorded (old checkpoints have none)."""
  why = checksums.mismatch(meta, actual()) if checksums.KEY in meta else None
  if why:
    raise _Corrupt(why)


def abstract(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) of a pytree of jax arrays."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), tree)
