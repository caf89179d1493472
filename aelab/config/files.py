"""Loads a config file, `path/to/file.py[:arg]`, the way `--config=` does: get_config(arg).

While a file loads, its own directory is importable, so an experiment builds on a sibling with
`from mnist_ae import get_config as mnist_ae_config`. The siblings are imported afresh for every
load and removed from `sys.modules` afterwards: loading twice, or two files with the same base,
gives the same result as loading once. Every failure is one line (AelabError).
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
  path, _, arg = spec.partition(':')
  file = pathlib.Path(path)
  if not file.is_file():
    raise AelabError(f'config file {path!r} does not exist')
  with _importable(file.resolve().parent):
    module = _exec(file, path)
    get_config = getattr(module, 'get_config', None)
    if not callable(get_config):
      raise AelabError(f'{path}: defines no get_config(arg=None); a config file must')
    config = _call(get_config, arg or None, path)
  if not isinstance(config, ml_collections.ConfigDict):
    raise AelabError(f'{path}: get_config({arg or None!r}) returned a {type(config).__name__}, '
                     'not an ml_collections.ConfigDict')
  return config


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


def _call(get_config, arg: str | None, path: str) -> object:
  try:
    return get_config(arg)
  except AelabError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise AelabError(f'{path}: get_config({arg!r}) raised {_one_line(e)}') from None


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
