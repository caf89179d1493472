"""SIGTERM and SIGINT as a request to stop: the loop checkpoints at the next block boundary.

    with signals.catch():       # re-entrant: the CLI installs it before importing jax, the
      ...                       # trainer again; the outermost one restores the old handlers
      if signals.received(): ...

A second signal while the first is being handled exits at once with INTERRUPTED.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

INTERRUPTED = 75  # exit code of a stopped run (EX_TEMPFAIL: rerun the same command to resume)

_state = {'depth': 0, 'received': None, 'old': {}}


def received() -> str | None:
  """'SIGTERM' or 'SIGINT' once one arrived, else None."""
  return _state['received']


def _handle(signum, frame):
  del frame
  name = signal.Signals(signum).name
  if _state['received'] is not None:
    print(f'aelab: second {name}: exiting now; rerun the same command to resume from the last '
          'checkpoint', file=sys.stderr, flush=True)
    os._exit(INTERRUPTED)
  _state['received'] = name


@contextlib.contextmanager
def catch():
  """Turns SIGTERM/SIGINT into `received()` while the block runs (main thread only)."""
  if _state['depth'] == 0:
    _state['received'] = None
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        _state['old'][sig] = signal.signal(sig, _handle)
      except ValueError:  # not the main thread: leave signals alone
        pass
  _state['depth'] += 1
  try:
    yield
  finally:
    _state['depth'] -= 1
    if _state['depth'] == 0:
      for sig, old in _state['old'].items():
        signal.signal(sig, old)
      _state['old'] = {}
