"""What aelab has, and each thing's options, read from the source text of the modules that
implement them (nothing is imported, so config files stay jax-free). Each is declared once,
beside the code that reads it:

  model       aelab/models/<name>.py         OPTIONS = dict(...): the fields of config.model
  term        aelab/losses/*.py              @term def <name>(out, <option>=<default>, ...)
  evaluator   aelab/evaluators/<type>.py     OPTIONS = dict(...): the fields of an evals entry
  source      aelab/data/*.py, aelab/analysis/*.py
                                             SOURCES = {<name>: dict(...)}: dataset names served

    catalog.names('model')               # ('classifier', 'conv', 'dense', 'sae', 'vae')
    catalog.options('term', 'auxk')      # {'k': 512}
    catalog.module('source', 'csv')      # 'aelab.data.tabular'

A declaration is a literal (numbers, strings, tuples, None, dicts and dict(...) calls of
those). Adding a model, term, evaluator or source is writing its module: nothing else lists it.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import functools
import pathlib
from typing import Any

from aelab.config import checks
from aelab.errors import AelabError

_AELAB = pathlib.Path(__file__).resolve().parents[1]
WHAT = {'model': 'model', 'term': 'loss term', 'evaluator': 'evaluator type',
        'source': 'dataset'}


@dataclasses.dataclass(frozen=True)
class Entry:
  name: str
  module: str          # the dotted module that implements it
  options: dict        # option -> default


def names(kind: str) -> tuple[str, ...]:
  return tuple(_entries(kind))


def entry(kind: str, name: Any) -> Entry:
  """The entry of `name`, or a one-line error listing the valid names of its kind."""
  entries = _entries(kind)
  if not isinstance(name, str) or name not in entries:
    raise AelabError(f'unknown {WHAT[kind]} {name!r}; valid choices: {", ".join(entries)}')
  return entries[name]


def options(kind: str, name: Any) -> dict:
  """A fresh copy of the options and defaults of `name`."""
  return copy.deepcopy(entry(kind, name).options)


def module(kind: str, name: Any) -> str:
  return entry(kind, name).module


def check_options(kind: str, name: str, given: dict, where: str, common: tuple = ()) -> None:
  """Every key of `given` is an option of `name` (or one of `common`)."""
  checks.fields(given, (*common, *entry(kind, name).options), where)


@functools.cache
def _entries(kind: str) -> dict[str, Entry]:
  read = {'model': lambda: _assigned('models', 'OPTIONS', one=True),
          'evaluator': lambda: _assigned('evaluators', 'OPTIONS', one=True),
          'source': lambda: {**_assigned('data', 'SOURCES'), **_assigned('analysis', 'SOURCES')},
          'term': _terms}[kind]
  return dict(sorted(read().items()))


def _files(package: str):
  for path in sorted((_AELAB / package).glob('*.py')):
    if path.name != '__init__.py':
      yield path, f'aelab.{package}.{path.stem}', ast.parse(path.read_text(), str(path))


def _assigned(package: str, variable: str, one: bool = False) -> dict[str, Entry]:
  """Modules of `package` that assign `variable` at top level: with `one`, an entry named after
  the module holding that dict; else one entry per key of the dict it holds."""
  out = {}
  for path, dotted, tree in _files(package):
    for node in tree.body:
      target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else \
          node.target if isinstance(node, ast.AnnAssign) else None
      if isinstance(target, ast.Name) and target.id == variable and node.value is not None:
        value = _literal(node.value, f'{path}: {variable}')
        items = {path.stem: value} if one else value
        for name, opts in items.items():
          out[name] = Entry(name, dotted, opts)
  return out


def _terms() -> dict[str, Entry]:
  """Functions decorated @term in aelab/losses: name -> their keyword options and defaults."""
  out = {}
  for path, dotted, tree in _files('losses'):
    for node in tree.body:
      if isinstance(node, ast.FunctionDef) and any(_is_term(d) for d in node.decorator_list):
        args = node.args
        positional = args.args[1:]  # the first is `out`
        defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
        opts = {a.arg: _literal(d, f'{path}: {node.name}({a.arg})')
                for a, d in zip(positional, defaults) if d is not None}
        opts.update({a.arg: _literal(d, f'{path}: {node.name}({a.arg})')
                     for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None})
        out[node.name] = Entry(node.name, dotted, opts)
  return out


def _is_term(decorator: ast.expr) -> bool:
  node = decorator.func if isinstance(decorator, ast.Call) else decorator
  return (isinstance(node, ast.Name) and node.id == 'term') or \
      (isinstance(node, ast.Attribute) and node.attr == 'term')


def _literal(node: ast.expr, where: str) -> Any:
  """A literal, with dict(a=..., b=...) calls read as dicts."""
  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict' \
      and not node.args:
    return {kw.arg: _literal(kw.value, where) for kw in node.keywords}
  if isinstance(node, ast.Dict):
    return {_literal(k, where): _literal(v, where) for k, v in zip(node.keys, node.values)}
  try:
    return ast.literal_eval(node)
  except ValueError:
    raise TypeError(f'{where} must be a literal (numbers, strings, tuples, None, dicts): '
                    f'{ast.unparse(node)}') from None
