"""The files of a sweep directory and the status of each point, read from its directory alone.

    DIR/sweep.json               the config spec, the base overrides, the points (at each start)
    DIR/<name>/sweep_point.json  index, name, overrides, command (before the point starts)
    DIR/<name>/run.log           the run's stdout and stderr (appended by every attempt)
    DIR/<name>/error.txt         the one-line error of a failed point
    DIR/<name>/.sweep.lock       held (flock) while a process runs the point
    DIR/<name>/summary.json ...  the run's own files (config.json, checkpoints/, metrics.jsonl)

Status of a point: `done` (summary.json), `running` (its lock is held), `failed` (error.txt),
`interrupted` (started, none of those), `pending` (never started).
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib

from aelab.errors import AelabError

SWEEP_FILE = 'sweep.json'
POINT_FILE = 'sweep_point.json'
ERROR_FILE = 'error.txt'
LOG_FILE = 'run.log'
LOCK_FILE = '.sweep.lock'
SUMMARY_FILE = 'summary.json'
STATUSES = ('done', 'failed', 'interrupted', 'running', 'pending')


def read_json(path: pathlib.Path) -> dict | None:
  """The JSON object in `path`; None when it is missing or unreadable."""
  try:
    obj = json.loads(path.read_text())
  except (OSError, ValueError):
    return None
  return obj if isinstance(obj, dict) else None


def summary(point_dir: pathlib.Path) -> dict | None:
  """The run's summary.json once it finished (a dict with its 'step'), else None."""
  obj = read_json(point_dir / SUMMARY_FILE)
  return obj if obj is not None and 'step' in obj else None


def status(point_dir: pathlib.Path) -> str:
  if summary(point_dir) is not None:
    return 'done'
  if not (point_dir / POINT_FILE).exists():
    return 'pending'
  if locked(point_dir):
    return 'running'
  return 'failed' if (point_dir / ERROR_FILE).exists() else 'interrupted'


def error(point_dir: pathlib.Path) -> str:
  try:
    return (point_dir / ERROR_FILE).read_text().strip()
  except OSError:
    return ''


def lock(point_dir: pathlib.Path) -> int | None:
  """An open descriptor holding the point's lock (pass it to the child that runs the point, so
  the lock lasts as long as either holds it); None when another process holds it."""
  point_dir.mkdir(parents=True, exist_ok=True)
  fd = os.open(point_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    os.close(fd)
    return None
  return fd


def locked(point_dir: pathlib.Path) -> bool:
  if not (point_dir / LOCK_FILE).exists():
    return False
  fd = lock(point_dir)
  if fd is None:
    return True
  os.close(fd)
  return False


def check_record(workdir: pathlib.Path, record: dict) -> None:
  """Refuses a sweep directory that holds a sweep of another config or other base overrides
  (its points would mix two experiments); a sweep with other points is fine (more seeds)."""
  old = read_json(workdir / SWEEP_FILE)
  if old is None:
    if (workdir / 'config.json').exists() or (workdir / 'checkpoints').is_dir():
      raise AelabError(f'{workdir} holds a run (config.json, checkpoints/), not a sweep; a sweep '
                       'writes one run per point into its own directory: use another --workdir')
    return
  for key, flag in (('config', '--config'), ('overrides', 'the --config.* overrides')):
    if old.get(key) != record[key]:
      raise AelabError(f'{workdir} holds a sweep with {flag} {old.get(key)!r}, not '
                       f'{record[key]!r}; use another --workdir (or delete {workdir / SWEEP_FILE} '
                       'if the change is harmless)')
