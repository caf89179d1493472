"""One writer behind the two rules: each (metric, step) reaches its store once, and a failure is
a warning line, after which the writer is off for the rest of the run (metrics.jsonl keeps every
row; the next resume sends what the store lacks)."""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol


class Store(Protocol):
  """A tracker's run, opened (continued on resume) by a writer module's `open_store`."""

  def held(self) -> set[tuple[str, int]]:
    """The (metric, step) pairs the store already holds for this run."""

  def write(self, step: int, time: float, scalars: Mapping[str, float]) -> None: ...

  def finish(self, step: int, summary: Mapping[str, float], plots: list[pathlib.Path]) -> None:
    """The end of a finished run: the summary's figures and the plots."""

  def close(self) -> None: ...


def _line(e: BaseException) -> str:
  text = ' '.join(str(e).split()) or type(e).__name__
  return text if len(text) <= 300 else text[:297] + '...'


class Writer:
  """`Writer(name, opener)`: opens the store (a failure warns and leaves `store` None)."""

  def __init__(self, name: str, opener: Callable[[], Store]):
    self.name, self.store = name, None
    self.store = self._guard(opener)
    self.held = (self._guard(self.store.held) or set()) if self.store is not None else set()

  def _guard(self, fn: Callable, *args) -> Any:
    try:
      return fn(*args)
    except Exception as e:  # pylint: disable=broad-except  # a tracker never ends the run
      print(f'aelab: warning: the {self.name} writer failed ({type(e).__name__}: {_line(e)}); the '
            'run goes on without it (metrics.jsonl keeps every row)', file=sys.stderr, flush=True)
      if self.store is not None:
        store, self.store = self.store, None
        try:
          store.close()
        except Exception:  # pylint: disable=broad-except
          pass
      return None

  def write(self, step: int, time: float, scalars: Mapping[str, float]) -> None:
    new = {k: float(v) for k, v in scalars.items() if (k, step) not in self.held}
    if self.store is not None and new:
      self._guard(self.store.write, step, time, new)
      self.held.update((k, step) for k in new)

  def replay(self, rows: Iterable[Mapping[str, Any]]) -> None:
    """The rows of metrics.jsonl kept from before a resume (those the store lacks are sent)."""
    for r in rows:
      self.write(int(r['step']), float(r.get('time', 0.0)),
                 {k: v for k, v in r.items() if k not in ('step', 'time')})

  def finish(self, summary: Mapping[str, Any], plots: list[pathlib.Path]) -> None:
    """summary.json's figures the store does not hold at the last step (the final evaluations'
    are there already), and the plots."""
    if self.store is not None:
      step = int(summary['step'])
      figures = {k: float(v) for k, v in flat(summary).items() if k != 'step' and
                 (k, step) not in self.held and isinstance(v, (int, float))
                 and not isinstance(v, bool)}
      self._guard(self.store.finish, step, figures, plots)

  def close(self) -> None:
    if self.store is not None:
      self._guard(self.store.close)
      self.store = None


def flat(tree: Mapping[str, Any], sep: str = '/', prefix: str = '') -> dict[str, Any]:
  """{'test': {'mse': 0.1}, 'step': 60} -> {'test/mse': 0.1, 'step': 60}."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(flat(v, sep, f'{prefix}{k}{sep}'))
    else:
      out[f'{prefix}{k}'] = v
  return out
