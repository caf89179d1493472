"""TensorBoard events, written with the `tensorboard` package's own event writer and protos (so
TensorFlow is not needed). The events directory is rewritten from metrics.jsonl on every open:
it holds nothing the store must remember."""

from __future__ import annotations

import pathlib
import shutil
import threading
from collections.abc import Mapping

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer import event_file_writer
from tensorboard.summary.writer.event_file_writer import EventFileWriter


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


class Events:
  def __init__(self, directory: pathlib.Path):
    shutil.rmtree(directory, ignore_errors=True)
    _quiet_event_thread()
    self._events = EventFileWriter(str(directory))

  def held(self) -> set[tuple[str, int]]:
    return set()

  def write(self, step: int, time: float, scalars: Mapping[str, float]) -> None:
    self._events.add_event(_event(step, time, scalars))

  def finish(self, step, summary, plots) -> None:
    self._events.flush()

  def close(self) -> None:
    self._events.close()


def open_store(config, run) -> Events:
  del config
  return Events(run.workdir / 'tensorboard')
