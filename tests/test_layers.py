"""The shape of the code: aelab's import graph (every import statement, those inside functions
too) has no cycle; data sources import nothing above them; no module outside aelab/models tests
a model's name or spells one of its parameter names; configs import no jax."""

import ast
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
AELAB = ROOT / 'aelab'
pytestmark = pytest.mark.quick


def _module(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def import_graph() -> dict[str, set[str]]:
  """module -> the aelab modules it imports (at any depth of its code, `from a import b` taken
  as the module a.b where that is a module, else a)."""
  modules = {_module(p): p for p in AELAB.rglob('*.py')}
  graph = {}
  for name, path in modules.items():
    package = name if path.name == '__init__.py' else name.rsplit('.', 1)[0]
    edges = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.Import):
        edges |= {a.name for a in node.names if a.name.startswith('aelab')}
      elif isinstance(node, ast.ImportFrom):
        base = node.module or ''
        if node.level:
          base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1]
                          + ([node.module] if node.module else []))
        if base.startswith('aelab'):
          for a in node.names:
            edges.add(f'{base}.{a.name}' if f'{base}.{a.name}' in modules else base)
    graph[name] = {e for e in edges if e in modules and e != name}
  return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in graph[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  sys.setrecursionlimit(10000)
  for v in sorted(graph):
    if v not in index:
      visit(v)
  return out


def test_the_import_graph_has_no_cycle():
  graph = import_graph()
  assert len(graph) > 80 and sum(map(len, graph.values())) > 200  # the graph was read
  assert cycles(graph) == []


def test_the_cycle_finder_finds_one():
  assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]


def test_data_sources_import_nothing_above_them():
  graph = import_graph()
  upward = {m: sorted(e for e in edges if e.split('.')[1] in ('analysis', 'trainer', 'models',
                                                              'evaluators', 'losses'))
            for m, edges in graph.items() if m.startswith('aelab.data')}
  assert {m: e for m, e in upward.items() if e} == {}


def test_no_module_outside_models_names_a_model_or_its_parameters():
  pattern = re.compile(r"model\.name ==|model\.name in|is_sae\(|'W_enc'|'encoder_")
  hits = [f'{p.relative_to(ROOT)}:{i + 1}' for p in AELAB.rglob('*.py')
          if 'models' not in p.relative_to(AELAB).parts
          for i, line in enumerate(p.read_text().splitlines()) if pattern.search(line)]
  assert hits == []


def test_config_files_import_no_jax():
  code = ('import sys, glob\nfrom aelab import config\n'
          "for f in sorted(glob.glob('experiments/*.py')): config.load(f)\n"
          "print(sorted({m.split('.')[0] for m in sys.modules} & "
          "{'jax', 'flax', 'optax', 'orbax', 'tensorboard', 'matplotlib'}))")
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       check=True)
  assert out.stdout.strip() == '[]'
