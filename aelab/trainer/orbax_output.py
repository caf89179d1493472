"""What orbax says on its own, put in aelab's words: its logs held back while a possibly corrupt
checkpoint is read (`quiet`), the late tracebacks of its abandoned reads and writes dropped
(`hush_leftovers`), its ERROR records held while a save is in flight (`HELD`), and a failed
read's or write's reason in one line (`reason`, `os_reason`, `size`, `free`)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pathlib
import re
import shutil
import sys
import threading


@contextlib.contextmanager
def quiet():
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


def hush_leftovers() -> None:
  """After a failed read or write, orbax's abandoned reads and writes (tensorstore's) end on a
  closed event loop, and Python prints their tracebacks later (sys.unraisablehook, asyncio's
  'exception was never retrieved' log, a thread's excepthook), possibly at exit. Installed once,
  this drops exactly those and passes everything else on."""
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


class _HeldLogs(logging.Filter):
  """Orbax's save threads log a failed write with its traceback, several times over, before the
  failure reaches `Checkpoints`, which reports it in one line: orbax's ERROR records are held back
  while a writer saves, dropped once a failure was reported, and passed on when none was (then
  they are orbax's only word on something)."""

  def __init__(self):
    super().__init__()
    self.held: list[logging.LogRecord] = []
    self.dropping = False

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno < logging.ERROR or f'{os.sep}orbax{os.sep}' not in record.pathname:
      return True
    if not self.dropping:
      self.held.append(record)
    return False

  def release(self) -> None:
    held, self.held = self.held, []
    for record in held:  # past this filter: callHandlers skips the logger's own filters
      logging.getLogger('absl').callHandlers(record)

  def drop(self) -> None:
    self.held, self.dropping = [], True


HELD = _HeldLogs()


def os_reason(e: BaseException) -> tuple[int | None, str]:
  """(errno, the OS's words) of a failed write, whatever orbax raised: an OSError, or tensorstore's
  ValueError ('RESOURCE_EXHAUSTED: ... No space left on device [os_error_code='28']'); (None, the
  exception's first line) when it names no OS error."""
  chain = [x for x in (e, e.__cause__, e.__context__) if x is not None]
  for x in chain:
    if isinstance(x, OSError) and x.errno:
      return x.errno, x.strerror or os.strerror(x.errno)
  text = ' '.join(str(x) for x in chain)
  code = re.search(r"os_error_code='?(\d+)", text)
  if code:
    return int(code.group(1)), os.strerror(int(code.group(1)))
  if 'No space left on device' in text:
    return errno.ENOSPC, os.strerror(errno.ENOSPC)
  first = (str(e).strip().splitlines() or [''])[0][:300]
  return None, f'{type(e).__name__}: {first}' if first else type(e).__name__


def size(n: float) -> str:
  for unit in ('bytes', 'KiB', 'MiB', 'GiB'):
    if n < 1024 or unit == 'GiB':
      return f'{n:.0f} {unit}' if unit == 'bytes' else f'{n:.1f} {unit}'
    n /= 1024


def free(directory: pathlib.Path) -> str:
  try:
    return f'{size(shutil.disk_usage(directory).free)} free there'
  except OSError:
    return 'free space unknown'


def reason(what: str, e: BaseException, root: pathlib.Path) -> str:
  """'array data unreadable: DATA_LOSS in arrays/d/1f0e...' from a tensorstore/orbax error."""
  text = ' '.join(str(x) for x in (e, e.__cause__, e.__context__) if x is not None)
  code = re.search(r'\b([A-Z]+_[A-Z_]+)\b', text)
  files = [pathlib.Path(f) for f in re.findall(r'local file "([^"]+)"', text)]
  where = f' in {files[-1].relative_to(root)}' if files and files[-1].is_relative_to(root) else ''
  return f'{what} unreadable: {code.group(1) if code else type(e).__name__}{where}'
