"""The "Reproduce the features by hand" recipe of docs/by_hand.md, run exactly as written (taken
from the page, so the documentation cannot drift), against the `features` / `reconstruct` outputs."""

import re
import shlex
import shutil

import numpy as np
import pytest

from aelab import inspect
from aelab.trainer import train
from conftest import DATA, ROOT, experiment, read_table

pytestmark = pytest.mark.quick  # the fast tier: python -m pytest -m quick

SECTION = '# Reproduce the features by hand'


def _blocks():
  text = (ROOT / 'docs' / 'by_hand.md').read_text()
  assert SECTION in text, f'docs/by_hand.md lost its section {SECTION!r}'
  section = text[text.index(SECTION):]
  section = section[:section.find('\n## ', len(SECTION))]
  bash = re.findall(r'```bash\n(.*?)```', section, re.S)[0]
  python = re.findall(r'```python\n(.*?)```', section, re.S)[0]
  return bash.strip().splitlines(), python


def _matrix(path):
  _, table = read_table(path)
  return np.stack([v for k, v in table.items() if k != 'label'], axis=1)


@pytest.fixture(scope='module')
def recipe(tmp_path_factory):
  """Runs the page's commands in a scratch directory (training h2o_tanh:tiny), then its numpy."""
  commands, python = _blocks()
  tmp = tmp_path_factory.mktemp('by_hand')
  (tmp / 'tests' / 'data').mkdir(parents=True)
  shutil.copy(DATA / 'breast_cancer.csv', tmp / 'tests' / 'data')
  train_cmd = [c for c in commands if c.startswith('python -m aelab.run ')]
  assert train_cmd == ['python -m aelab.run --config=experiments/h2o_tanh.py '
                       '--workdir=workdirs/h2o_tanh']
  config = experiment('h2o_tanh')
  config.train.progress = False
  config.evals.plots.every = -1
  train.train_and_evaluate(config, tmp / 'workdirs' / 'h2o_tanh')
  with pytest.MonkeyPatch.context() as mp:
    mp.chdir(tmp)
    inspect_cmds = [c for c in commands if c.startswith('python -m aelab.inspect ')]
    assert len(inspect_cmds) == 5
    for command in inspect_cmds:
      inspect.run(shlex.split(command)[3:])
    namespace: dict = {}
    exec(compile(python, 'docs/by_hand.md', 'exec'), namespace)  # noqa: S102 - our own docs
    outputs = {name: _matrix(tmp / f'h2o_{name}.csv')
               for name in ('layer1', 'layer2', 'output', 'recon')}
  return namespace, outputs


@pytest.mark.parametrize('by_hand,tool', [('h1', 'layer1'), ('h2', 'layer2'), ('z_hat', 'output')])
def test_layers_and_output_match_to_1e5(recipe, by_hand, tool):
  namespace, outputs = recipe
  mine, theirs = namespace[by_hand], outputs[tool]
  assert mine.shape == theirs.shape and mine.shape[0] == 569
  assert np.abs(mine - theirs).max() <= 1e-5
  assert np.abs(theirs).max() > 0.05  # a trained network, not zeros


def test_reconstruction_in_input_units_matches_to_float32_precision(recipe):
  namespace, outputs = recipe
  w, x_hat, theirs = namespace['w'], namespace['x_hat'], outputs['recon']
  # Values reach the thousands (areas), where float32 itself is only good to ~1e-4, and some
  # reconstructions are near 0 after cancelling thousands: compare in units of each feature's
  # range (1 / mul, the scale the network works in).
  assert np.abs((x_hat - theirs) * w['mul']).max() <= 1e-5
  assert np.abs(x_hat - theirs).max() <= 1e-5 * np.abs(theirs).max()


def test_the_documented_01_normalisation_does_not_reproduce_layer_1(recipe):
  """The question's bug: [-0.5, 0.5] min-max scaling instead of (x - mean) / (max - min)."""
  namespace, outputs = recipe
  x, w = namespace['x'], namespace['w']
  z_wrong = (x - x.min(0)) / (x.max(0) - x.min(0)) - 0.5
  h1_wrong = np.tanh(z_wrong @ w['encoder_1/kernel'] + w['encoder_1/bias'])
  assert np.abs(h1_wrong - outputs['layer1']).max() > 0.05
  # ...while layer 2 computed from the tool's own layer 1 matches, exactly as the user saw.
  h2 = np.tanh(outputs['layer1'] @ w['encoder_2/kernel'] + w['encoder_2/bias'])
  assert np.abs(h2 - outputs['layer2']).max() <= 1e-5
