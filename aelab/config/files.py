"""Loads a config file, `path/to/file.py[:arg]`, the way `--config=` does: get_config(arg).

While a file loads, its own directory is importable, so an experiment builds on a sibling with
`from mnist_ae import get_config as mnist_ae_config`. The siblings are imported afresh for every
load and removed from `sys.modules` afterwards: loading twice, or two files with the same base,
gives the same result as loading once. Every failure is one line (AelabError).

A file may also define `get_sweep(arg=None)`, the points of its sweep (aelab/config/sweeps.py);
`load_sweep('file.py[:arg]')` returns them (None when the file defines none).
"""

from __future__ import annotations

import contextlib
import pathlib
import sys
import types
from collections.abc import Iterator

import ml_collections

from aelab.errors import AelabError


def load(spec: str) -> ml_collections.ConfigDict:
  """`get_config(arg)` of the file in `spec` ('file.py' or 'file.py:arg'; no arg passes None)."""
  path, arg, config = _get(spec, 'get_config', required=True)
  if not isinstance(config, ml_collections.ConfigDict):
    raise AelabError(f'{path}: get_config({arg!r}) returned a {type(config).__name__}, '
                     'not an ml_collections.ConfigDict')
  return config


def load_sweep(spec: str) -> list[dict] | None:
  """`get_sweep(arg)` of the file in `spec`, checked to be a list of {'a.b': value} points; None
  when the file defines no get_sweep."""
  from aelab.config import sweeps  # pylint: disable=import-outside-toplevel
  path, arg, points = _get(spec, 'get_sweep', required=False)
  if points is _MISSING:
    return None
  points = sweeps.check(points, f'{path}: get_sweep({arg!r})')
  if not points:
    raise AelabError(f'{path}: get_sweep({arg!r}) returned no points')
  return points


_MISSING = object()


def _get(spec: str, name: str, required: bool) -> tuple[str, str | None, object]:
  """(path, arg, `name(arg)` of the file in `spec`); _MISSING when it is not defined."""
  path, _, arg = spec.partition(':')
  file = pathlib.Path(path)
  if not file.is_file():
    raise AelabError(f'config file {path!r} does not exist')
  with _importable(file.resolve().parent):
    module = _exec(file, path)
    fn = getattr(module, name, None)
    if not callable(fn):
      if not required:
        return path, arg or None, _MISSING
      raise AelabError(f'{path}: defines no {name}(arg=None); a config file must')
    return path, arg or None, _call(fn, name, arg or None, path)


def _exec(file: pathlib.Path, path: str) -> types.ModuleType:
  """The file run as a fresh module (never registered in sys.modules)."""
  source = file.read_text()
  try:
    code = compile(source, str(file), 'exec')
  except SyntaxError as e:
    raise AelabError(f'{path}:{e.lineno}: syntax error: {e.msg}') from None
  module = types.ModuleType(f'_aelab_config_{file.stem}')
  module.__file__ = str(file.resolve())
  try:
    exec(code, module.__dict__)  # pylint: disable=exec-used
  except AelabError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise AelabError(f'{path}: running the file raised {_one_line(e)}') from None
  return module


def _call(fn, name: str, arg: str | None, path: str) -> object:
  try:
    return fn(arg)
  except AelabError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise AelabError(f'{path}: {name}({arg!r}) raised {_one_line(e)}') from None


def _one_line(e: BaseException) -> str:
  message = ' '.join(str(e).split())
  return f'{type(e).__name__}: {message}' if message else type(e).__name__


@contextlib.contextmanager
def _importable(directory: pathlib.Path) -> Iterator[None]:
  """`directory` first on sys.path, and its modules imported afresh, for the duration."""
  names = {p.stem for p in directory.glob('*.py')}
  hidden = {name: sys.modules.pop(name) for name in names if name in sys.modules}
  sys.path.insert(0, str(directory))
  try:
    yield
  finally:
    sys.path.remove(str(directory))
    for name in names:
      sys.modules.pop(name, None)
    sys.modules.update(hidden)
