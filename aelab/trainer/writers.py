"""The run's metrics: `metrics.jsonl` (one JSON object a line), the record, and the writers of
train.writers (aelab/tracking: TensorBoard, W&B, MLflow). On resume metrics.jsonl is cut back to
the rows the checkpoint counted (a torn last line of a killed run goes with them) and each writer
is handed those rows, so that every one reads as if the run had never stopped.
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from collections.abc import Mapping, Sequence

from aelab import files
from aelab.tracking.writer import Writer


def _rows(text: str) -> list[dict]:
  """The complete rows of a metrics.jsonl text; a torn line (a run killed mid-write) is dropped."""
  rows = []
  for line in text.splitlines():
    if line.strip():
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        break
  return rows


def read_jsonl(path: str | pathlib.Path) -> list[dict]:
  path = pathlib.Path(path)
  return _rows(path.read_text()) if path.exists() else []


class MetricWriter:
  """Writes scalars to `workdir/metrics.jsonl` and to `writers` (opened by aelab.tracking).

  keep_rows: rows of an earlier run to keep (the count its checkpoint recorded); None keeps
  none (a fresh run). `rows` counts the rows in the file, for the next checkpoint.
  """

  def __init__(self, workdir: str | pathlib.Path, keep_rows: int | None = None,
               enabled: bool = True, writers: Sequence[Writer] = ()):
    self.enabled, self.rows, self.writers = enabled, 0, list(writers)
    workdir = pathlib.Path(workdir)
    self.path = workdir / 'metrics.jsonl'
    if not enabled:
      return
    kept = read_jsonl(self.path)[:keep_rows or 0]
    files.write_text(self.path, ''.join(json.dumps(r) + '\n' for r in kept))
    self.rows = len(kept)
    self._file = self.path.open('a')
    for w in self.writers:
      w.replay(kept)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    clean, now = {k: float(v) for k, v in scalars.items()}, time.time()
    self._file.write(json.dumps({'step': int(step), 'time': now, **{
        k: (v if math.isfinite(v) else str(v)) for k, v in clean.items()}}) + '\n')
    self._file.flush()
    self.rows += 1
    for w in self.writers:
      w.write(step, now, clean)

  def finish(self, summary: Mapping, plots: Sequence[pathlib.Path]) -> None:
    """A finished run's summary and plots, to the writers."""
    for w in self.writers:
      w.finish(summary, list(plots))

  def close(self) -> None:
    if self.enabled and not self._file.closed:
      self._file.close()
    for w in self.writers:
      w.close()

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
