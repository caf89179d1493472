"""Runs sweep points as subprocesses, N at a time, with one progress bar (points done / total).

A job is one point (`python -m aelab.run ...`) or a group of points trained together (when a
group fails, its points run again one by one, so a seed that diverges fails alone); it holds
each point's lock (aelab/sweep/layout.py) for as long as its process lives, so a rerun, or
another machine of a job array, never runs a point twice at once: it waits for the lock. Before
a job starts, each point's sweep_point.json is written and its old error.txt removed; the
process's output is appended to the first point's run.log. When it exits a point is `done` when
its summary.json exists, else `failed` (exit code 2, or any other error: its one-line error goes
to error.txt and to stderr) or `interrupted` (exit code 75, or killed by a signal).

SIGTERM/SIGINT to the sweep: no new job starts, the signal is forwarded once to every running
process (each in its own session, so a terminal's Ctrl-C reaches them only through the sweep),
which checkpoints and exits 75. On Linux each process gets SIGTERM when the sweep dies (even
by kill -9), so it checkpoints instead of running on unwatched.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence

import tqdm

from aelab import files
from aelab.sweep import layout
from aelab.sweep.points import Point
from aelab.trainer import signals

Command = Callable[[list[Point]], list[str]]


@dataclasses.dataclass
class _Job:
  points: list[Point]
  proc: subprocess.Popen | None = None
  locks: list[int] = dataclasses.field(default_factory=list)
  offset: int = 0  # the size of run.log before this attempt


@dataclasses.dataclass
class Outcome:
  status: dict[int, str]   # point index -> done, failed, interrupted or pending
  stopped: str | None      # 'SIGTERM' / 'SIGINT' when the sweep itself was stopped


class Runner:
  """`Runner(workdir, command).run(groups, parallel)`; `command(points)` is a job's argv."""

  def __init__(self, workdir: pathlib.Path, command: Command, total: int):
    self.workdir, self.command, self.total = workdir, command, total
    self.status: dict[int, str] = {}
    self.waiting: set[int] = set()
    self.bar = None

  def run(self, groups: Sequence[Sequence[Point]], parallel: int) -> Outcome:
    queue = collections.deque(_Job(list(g)) for g in groups)
    running: list[_Job] = []
    forwarded = None
    tqdm.tqdm.monitor_interval = 0  # no monitor thread: children are forked (preexec_fn)
    done = self.total - sum(len(g) for g in groups)
    with signals.catch(), tqdm.tqdm(total=self.total, initial=done, unit='point', desc='sweep',
                                    file=sys.stderr, dynamic_ncols=True) as self.bar:
      while queue or running:
        stop = signals.received()
        if stop and not forwarded:
          forwarded = stop
          for job in running:
            job.proc.send_signal(getattr(signal, stop))
        if not stop:
          self._start_some(queue, running, parallel)
        for job in [j for j in running if j.proc.poll() is not None]:
          running.remove(job)
          queue.extend(self._finish(job))
        self._postfix(running)
        time.sleep(0.05)
    for job in queue:
      self.status.update({p.index: layout.status(self.dir(p)) for p in job.points})
    return Outcome(self.status, signals.received() or forwarded)

  def dir(self, point: Point) -> pathlib.Path:
    return self.workdir / point.name

  def _start_some(self, queue: collections.deque, running: list, parallel: int) -> None:
    for _ in range(len(queue)):
      if len(running) >= parallel:
        return
      job = queue.popleft()
      job.points = [p for p in job.points if not self._skip_done(p)]
      if not job.points:
        continue
      if not self._lock(job):
        queue.append(job)
        continue
      self._start(job)
      running.append(job)

  def _skip_done(self, point: Point) -> bool:
    """True (and counted) when the point finished meanwhile, e.g. on another machine."""
    if layout.summary(self.dir(point)) is None:
      return False
    self.status[point.index] = 'done'
    self.bar.update(1)
    return True

  def _lock(self, job: _Job) -> bool:
    for point in job.points:
      fd = layout.lock(self.dir(point))
      if fd is None:
        self._release(job)
        if point.index not in self.waiting:
          self.waiting.add(point.index)
          self._say(f'aelab: point {point.index} ({point.name}) is being run by another process; '
                    'waiting for it', err=True)
        return False
      job.locks.append(fd)
    return True

  def _release(self, job: _Job) -> None:
    for fd in job.locks:
      os.close(fd)
    job.locks = []

  def _start(self, job: _Job) -> None:
    command = self.command(job.points)
    for point in job.points:
      files.write_json(self.dir(point) / layout.POINT_FILE, {
          **point.to_json(), 'command': command,
          'group': [p.index for p in job.points] if len(job.points) > 1 else None})
      (self.dir(point) / layout.ERROR_FILE).unlink(missing_ok=True)
    log = self.dir(job.points[0]) / layout.LOG_FILE
    with open(log, 'ab') as out:
      job.offset = out.tell()
      with warnings.catch_warnings():
        # jax (imported here to check the points) warns at every fork; this child only sets its
        # parent-death signal (one prctl call, no lock taken) and execs.
        warnings.filterwarnings('ignore', r'os\.fork\(\) was called', RuntimeWarning)
        job.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    pass_fds=job.locks, preexec_fn=_die_with_parent())

  def _finish(self, job: _Job) -> list[_Job]:
    """Records each point's status; returns the jobs to run next: the points of a group that
    failed (one seed diverging stops the runs trained with it), each on its own."""
    rc = job.proc.returncode
    log = self.dir(job.points[0]) / layout.LOG_FILE
    if len(job.points) > 1 and rc not in (0, signals.INTERRUPTED) and rc > 0:
      self._release(job)
      message = error_line(log, job.offset, rc)
      self._say(f'aelab: the group of points {", ".join(str(p.index) for p in job.points)} '
                f'failed ({message}); running them one by one', err=True)
      return [_Job([p]) for p in job.points if layout.summary(self.dir(p)) is None]
    for point in job.points:
      d = self.dir(point)
      if layout.summary(d) is not None:
        self.status[point.index] = 'done'
        self.bar.update(1)
        wall = layout.summary(d).get('wall_time_s') or 0.0
        self._say(f'aelab: point {point.index} ({point.name}) done in {wall:.1f} s')
      elif rc == signals.INTERRUPTED or rc < 0:
        self.status[point.index] = 'interrupted'
        how = f'exit code {rc}' if rc > 0 else f'killed by {signal.Signals(-rc).name}'
        self._say(f'aelab: point {point.index} ({point.name}) interrupted ({how}); rerun the '
                  'sweep to resume it', err=True)
      else:
        message = error_line(log, job.offset, rc)
        self.status[point.index] = 'failed'
        files.write_text(d / layout.ERROR_FILE, message + '\n')
        self._say(f'aelab: point {point.index} ({point.name}) failed: {message}', err=True)
    self._release(job)
    return []

  def _postfix(self, running: list) -> None:
    failed = sum(s == 'failed' for s in self.status.values())
    self.bar.set_postfix_str(f'running={sum(len(j.points) for j in running)}, failed={failed}',
                             refresh=False)

  def _say(self, line: str, err: bool = False) -> None:
    tqdm.tqdm.write(line, file=sys.stderr if err else sys.stdout)


def error_line(log: pathlib.Path, offset: int, rc: int) -> str:
  """The run's `aelab: error: ...` message in its log since `offset`, else its last line."""
  try:
    with open(log, 'rb') as f:
      f.seek(offset)
      text = f.read().decode(errors='replace')
  except OSError:
    text = ''
  lines = [line.strip() for line in re.split(r'[\r\n]+', text) if line.strip()]
  for line in reversed(lines):
    if line.startswith('aelab: error: '):
      return line[len('aelab: error: '):]
  last = lines[-1] if lines else 'no output'
  return f'exit code {rc}: {last} (see {log})'


def _die_with_parent() -> Callable[[], None] | None:
  """preexec_fn: the child gets SIGTERM when the sweep dies (Linux prctl PR_SET_PDEATHSIG)."""
  if not sys.platform.startswith('linux'):
    return None
  try:
    prctl = ctypes.CDLL(None, use_errno=True).prctl
  except (OSError, AttributeError):
    return None
  parent = os.getpid()

  def preexec() -> None:
    prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the sweep died before the prctl
      os.kill(os.getpid(), signal.SIGTERM)
  return preexec
