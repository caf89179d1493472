"""Metric writers for the workdir: `metrics.jsonl` (one JSON object a line) and TensorBoard events.

TensorBoard events are written with the `tensorboard` package's own event writer and protos,
so TensorFlow is not needed.
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from collections.abc import Mapping

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


def read_jsonl(path: str | pathlib.Path) -> list[dict]:
  path = pathlib.Path(path)
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricWriter:
  """Writes scalars to `workdir/metrics.jsonl` and `workdir/tensorboard/`.

  `resume_step`: rows of an earlier, interrupted run beyond the step the run resumes from are
  dropped, so the file reads as if the run had never stopped.
  """

  def __init__(self, workdir: str | pathlib.Path, resume_step: int = 0, enabled: bool = True):
    self.enabled = enabled
    workdir = pathlib.Path(workdir)
    self.path = workdir / 'metrics.jsonl'
    if not enabled:
      return
    rows = [r for r in read_jsonl(self.path) if r.get('step', 0) <= resume_step]
    self.path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    self._file = self.path.open('a')
    self._events = EventFileWriter(str(workdir / 'tensorboard'))

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    clean = {k: float(v) for k, v in scalars.items()}
    self._file.write(json.dumps({'step': int(step), 'time': time.time(), **{
        k: (v if math.isfinite(v) else str(v)) for k, v in clean.items()}}) + '\n')
    self._file.flush()
    values = [summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in clean.items()]
    self._events.add_event(event_pb2.Event(
        wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values)))

  def flush(self) -> None:
    if self.enabled:
      self._file.flush()
      self._events.flush()

  def close(self) -> None:
    if self.enabled:
      self._file.close()
      self._events.close()
