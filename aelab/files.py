"""Files written atomically: a temporary file beside the target (`.<name>.<pid>.tmp`), then a
rename. An error before the rename (bad input, a full disk) leaves no partial file and keeps any
previous file at that path; a process killed meanwhile leaves at most that one temporary file,
which its next write of the same path replaces.

    with files.atomic('out.npz') as tmp: np.savez(tmp, ...)
    with files.atomic_directory('out_dir') as tmp: ...   # a directory, whole or not at all
    files.write_text(path, text); files.write_json(path, obj)
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from aelab.errors import AelabError


@contextlib.contextmanager
def atomic(path: str | pathlib.Path) -> Iterator[pathlib.Path]:
  """Yields the temporary path to write; renames it onto `path` when the block succeeds."""
  path = pathlib.Path(path)
  if path.is_dir():
    raise AelabError(f'{path} is a directory; give a file name')
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(path: str | pathlib.Path) -> Iterator[pathlib.Path]:
  """Yields a new temporary directory beside `path` to fill; when the block succeeds it takes
  the umask's permissions and replaces `path` (a previous directory there is moved aside, then
  removed), so a reader sees the old directory or the new one, never half of one."""
  out = pathlib.Path(path)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f'.{out.name}.', suffix='.tmp', dir=out.parent))
  try:
    yield tmp
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o777 & ~mask)
    if out.exists():
      old = out.with_name(f'.{out.name}.old')
      shutil.rmtree(old, ignore_errors=True)
      os.replace(out, old)
      os.replace(tmp, out)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.replace(tmp, out)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def check_writable(path: str | pathlib.Path, flag: str = '--out') -> pathlib.Path:
  """`path` as a file that can be written, checked before any work that would be lost: its
  nearest existing ancestor is a directory this process may write in, and `path` itself is not a
  directory. Creates nothing."""
  path = pathlib.Path(path)
  if path.is_dir():
    raise AelabError(f'{flag}={str(path)!r} is a directory; give a file name')
  parent = path.parent
  while not parent.exists():
    parent = parent.parent
  if not parent.is_dir():
    raise AelabError(f'{flag}={str(path)!r}: {parent} is a file, not a directory')
  if not os.access(parent, os.W_OK | os.X_OK):
    raise AelabError(f'{flag}={str(path)!r}: {parent} is not writable')
  return path


def write_text(path: str | pathlib.Path, text: str) -> None:
  with atomic(path) as tmp:
    tmp.write_text(text)


def write_json(path: str | pathlib.Path, obj: Any) -> None:
  write_text(path, json.dumps(obj, indent=2) + '\n')


def read_json(path: str | pathlib.Path) -> Any:
  """The JSON in `path`; a one-line error naming the file when it is not JSON (a torn file)."""
  path = pathlib.Path(path)
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise AelabError(f'{path} is not valid JSON ({e.msg} at line {e.lineno}); it is torn or was '
                     'edited by hand: restore it or remove it') from None
  except UnicodeDecodeError:
    raise AelabError(f'{path} is not valid JSON (not UTF-8 text); restore it or remove it') \
        from None
