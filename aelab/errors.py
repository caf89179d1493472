"""The one exception type for problems a user can fix (bad config, bad data, missing files), and
the one way a command line ends with one: `exit_with`."""

from __future__ import annotations

import os
import sys


class AelabError(Exception):
  """A user-facing error: the command line prints its message as one line, no traceback."""


def exit_with(message: str, code: int = 2, now: bool = False) -> None:
  """Prints `aelab: error: <message>` on stderr, on a line of its own (a progress bar is closed
  first), and exits with `code`; `now` exits at once (os._exit: from a watchdog thread, or where
  cleanup could hang on a dead peer)."""
  tqdm = sys.modules.get('tqdm')
  if tqdm is not None:
    for bar in list(getattr(tqdm.tqdm, '_instances', ())):
      bar.close()
  print(f'aelab: error: {" ".join(str(message).split())}', file=sys.stderr, flush=True)
  if now:
    os._exit(code)
  else:
    sys.exit(code)
