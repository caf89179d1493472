"""Metric writers for the workdir: `metrics.jsonl` (one JSON object a line) and TensorBoard events.

TensorBoard events are written with the `tensorboard` package's own event writer and protos,
so TensorFlow is not needed. metrics.jsonl is the record: on resume it is cut back to the rows
the checkpoint counted (a torn last line of a killed run goes with them) and the TensorBoard
events are rewritten from it, so both read as if the run had never stopped.
"""

from __future__ import annotations

import json
import math
import pathlib
import threading
import shutil
import time
from collections.abc import Mapping

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer import event_file_writer
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from aelab import files


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


def _event(step: int, wall_time: float, scalars: Mapping[str, float]) -> event_pb2.Event:
  values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
  return event_pb2.Event(wall_time=wall_time, step=int(step), summary=summary_pb2.Summary(value=values))


def _quiet_event_thread() -> None:
  """tensorboard's writer thread dies printing its traceback when a write fails (a full disk);
  the writer re-raises the same error to the caller at its next write or flush, which turns it
  into one line. Installed once: drops exactly those tracebacks, passes every other thread's."""
  previous = threading.excepthook
  if getattr(previous, 'aelab_events', False):
    return

  def hook(args):
    if not isinstance(args.thread, event_file_writer._AsyncWriterThread):  # pylint: disable=protected-access
      previous(args)

  hook.aelab_events = True
  threading.excepthook = hook


class MetricWriter:
  """Writes scalars to `workdir/metrics.jsonl` and `workdir/tensorboard/`.

  keep_rows: rows of an earlier run to keep (the count its checkpoint recorded); None keeps
  none (a fresh run). `rows` counts the rows in the file, for the next checkpoint.
  """

  def __init__(self, workdir: str | pathlib.Path, keep_rows: int | None = None,
               enabled: bool = True):
    self.enabled, self.rows = enabled, 0
    workdir = pathlib.Path(workdir)
    self.path = workdir / 'metrics.jsonl'
    if not enabled:
      return
    kept = read_jsonl(self.path)[:keep_rows or 0]
    files.write_text(self.path, ''.join(json.dumps(r) + '\n' for r in kept))
    self.rows = len(kept)
    self._file = self.path.open('a')
    shutil.rmtree(workdir / 'tensorboard', ignore_errors=True)
    _quiet_event_thread()
    self._events = EventFileWriter(str(workdir / 'tensorboard'))
    for r in kept:
      scalars = {k: float(v) for k, v in r.items() if k not in ('step', 'time')}
      self._events.add_event(_event(r['step'], r.get('time', 0.0), scalars))

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    clean, now = {k: float(v) for k, v in scalars.items()}, time.time()
    self._file.write(json.dumps({'step': int(step), 'time': now, **{
        k: (v if math.isfinite(v) else str(v)) for k, v in clean.items()}}) + '\n')
    self._file.flush()
    self.rows += 1
    self._events.add_event(_event(step, now, clean))

  def flush(self) -> None:
    if self.enabled:
      self._file.flush()
      self._events.flush()

  def close(self) -> None:
    if self.enabled and not self._file.closed:
      self._file.close()
      self._events.close()

  def __enter__(self) -> MetricWriter:
    return self

  def __exit__(self, *exc) -> None:
    self.close()
