"""Shared fixtures: tiny real MNIST in tests/data, configs loaded the way the CLI loads them."""

import pathlib

import pytest

from aelab import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / 'tests' / 'data'

# The files that take longest (serial seconds on a 2-core machine, most first; test_tracking's
# only with the trackers' extras installed). Under xdist's --dist loadfile a worker takes a whole
# file at a time: these go out first and the many short files fill in at the end (queued last, a
# heavy file would leave one worker alone with it while the other idles).
HEAVY = ('test_sweep.py', 'test_stacked.py', 'test_faults.py', 'test_multiprocess.py',
         'test_tracking.py', 'test_classification.py', 'test_generative_runs.py', 'test_sae.py',
         'test_disentangle_models.py', 'test_vqvae.py', 'test_export.py', 'test_sharding.py',
         'test_zoo.py', 'test_streamed.py', 'test_generative.py', 'test_frechet.py',
         'test_train.py')


def pytest_configure(config):
  """xdist would queue the files by their number of tests (--loadscope-reorder, its default),
  which puts the heavy files above, most of which hold few tests, last: keep the collection
  order that pytest_collection_modifyitems below sets."""
  if hasattr(config.option, 'loadscopereorder'):
    config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
  """The HEAVY files first, in that order; the others after them, as collected. The order of the
  tests within a file stays as written (module fixtures, and tests that read what earlier ones
  left, rely on it)."""
  rank = {name: i for i, name in enumerate(HEAVY)}
  items.sort(key=lambda item: rank.get(item.path.name, len(HEAVY)))  # stable


@pytest.fixture(autouse=True)
def _offline_data_env(monkeypatch, tmp_path_factory):
  """Tests read only tests/data and a per-session empty cache: never ~/.cache, never the network."""
  monkeypatch.setenv('AELAB_DATA_DIR', str(DATA))
  monkeypatch.setenv('AELAB_CACHE_DIR', str(tmp_path_factory.getbasetemp() / 'cache'))


@pytest.fixture(scope='session', autouse=True)
def _compile_cache(tmp_path_factory):
  """One persistent compilation cache for the session's runs, in-process and in subprocesses
  (they find it through AELAB_CACHE_DIR): a program compiled by one test is read back by the
  next instead of compiled again."""
  import os
  from aelab.trainer import compile_cache
  base = tmp_path_factory.getbasetemp()
  root = base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base  # shared by the workers
  os.environ['AELAB_COMPILE_CACHE_DIR'] = str(root / 'jax_cache')
  compile_cache.enable()


@pytest.fixture(scope='session')
def tiny_mnist_run(tmp_path_factory):
  """mnist_ae:tiny trained once for the session (60 steps, checkpoints at 30 and 60): (workdir,
  summary). For tests that only read a trained run; one that changes it works on a copy."""
  workdir = tmp_path_factory.mktemp('tiny_mnist') / 'run'
  config = experiment('mnist_ae')
  config.train.progress = False
  return workdir, train_on_test_data(config, workdir)


@pytest.fixture
def x64():
  """Float64 for hand-derived and finite-difference gradient checks; restores the setting."""
  import jax
  previous = jax.config.read('jax_enable_x64')
  jax.config.update('jax_enable_x64', True)
  yield
  jax.config.update('jax_enable_x64', previous)


def experiment(name: str, arg: str = 'tiny'):
  return config_lib.load(str(ROOT / 'experiments' / f'{name}.py') + f':{arg}')


def tiny_classifier(steps: int):
  """mnist_ae:tiny's digits classified by 784-32-softmax(10), `steps` steps, accuracy on test."""
  from aelab.config import defaults
  config = experiment('mnist_ae')
  config.model = defaults.model('classifier', hidden=(32,), activation='relu', classes=10)
  config.loss = defaults.loss(softmax_cross_entropy=dict(weight=1.0))
  config.train.update(progress=False, num_steps=steps, checkpoint_every=0)
  config.evals = dict(test=defaults.evaluator('classification', split='test'))
  return config


def read_table(path):
  """A CSV that aelab wrote, read with aelab's one CSV reader: (its '# ' comment lines,
  {column: values} in column order); the 'label' and 'feature' columns as text."""
  import numpy as np

  from aelab.data import tabular
  names = tabular.first_row(path, comment='#')
  text = next((c for c in ('label', 'feature') if c in names), '')
  x, y, columns, extra = tabular.read_csv(path, label_column=text, comment='#')
  table = {c: x[:, j] for j, c in enumerate(columns)}
  if text:
    table[text] = np.asarray(extra['label_names'])[y] if 'label_names' in extra else y
  return extra['comments'], {c: table[c] for c in names}


def one_line_error(fn, *args, **kwargs) -> str:
  """The message of the AelabError that fn(*args, **kwargs) raises, checked to be one line."""
  from aelab.errors import AelabError
  with pytest.raises(AelabError) as e:
    fn(*args, **kwargs)
  message = str(e.value)
  assert '\n' not in message, message
  return message


def train_on_test_data(config, workdir) -> dict:
  """train_and_evaluate with AELAB_DATA_DIR at tests/data, for module-scoped fixtures (they run
  before the autouse fixture above)."""
  from aelab.trainer import train
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv('AELAB_DATA_DIR', str(DATA))
    return train.train_and_evaluate(config, workdir)
