"""The train step on 8 fake CPU devices: batches sharded on `data`, same result as one device."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from aelab.trainer import checkpoint, sharding, train
from aelab.errors import AelabError
from conftest import DATA, ROOT, experiment


def _one_device_config():
  """mnist_ae:tiny, batch 40, 20 steps: the run that 8 devices must reproduce."""
  config = experiment('mnist_ae')
  config.train.update(batch_size=40, num_steps=20, progress=False)
  config.evals.plots.every = -1
  return config


def test_eight_devices_match_one(eight_devices, tmp_path):
  """The 8-device run is the placements script's 'replicated' one (train.mesh and train.sharding
  at their defaults, the config above with a checkpoint every 10 steps)."""
  from aelab.config import defaults
  base, got = eight_devices
  assert (defaults.TRAIN['mesh'], defaults.TRAIN['sharding']) == (
      (('data', -1),), (('.*', 'replicate'),))   # the 'replicated' placement's
  eight = got['replicated']
  assert eight['devices'] == 8 and eight['summary_devices'] == 8
  one = train.train_and_evaluate(_one_device_config(), tmp_path / 'one')
  assert one['devices'] == 1
  for key in ('bce', 'mse', 'loss'):
    assert eight['test'][key] == pytest.approx(one['test'][key], rel=1e-4)
  params = [checkpoint.Checkpoints(d).restore_raw(20)[1]['state']['params']
            for d in (base / 'replicated', tmp_path / 'one')]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), *params)


def test_batch_size_must_divide_over_devices():
  mesh = sharding.make_mesh()
  with pytest.raises(AelabError, match='positive multiple of the number of devices'):
    sharding.check_batch_size(0, mesh)


_PLACEMENTS = """
import json, sys, jax
sys.path.insert(0, 'tests')
from conftest import experiment
from aelab.trainer import train
PLACED = {'replicated': ((('data', -1),), (('.*', 'replicate'),)),   # the defaults
          'fsdp': ((('data', -1),), (('.*', 'fsdp'),)),
          'model': ((('data', 4), ('model', 2)), (('.*', 'model'),))}

def config(name, steps):
  c = experiment('mnist_ae')
  c.train.update(batch_size=40, num_steps=steps, progress=False, checkpoint_every=10)
  c.train.mesh, c.train.sharding = PLACED[name]
  c.evals.plots.every = -1
  return c

out = {}
for name in PLACED:
  s = train.train_and_evaluate(config(name, 20), f'{sys.argv[1]}/{name}')
  out[name] = {k: s[k] for k in ('param_bytes_per_device', 'opt_state_bytes_per_device', 'mesh',
                                 'test')}
  out[name].update(devices=jax.device_count(), summary_devices=s['devices'])
# Written under one mesh and placement, resumed under another.
train.train_and_evaluate(config('fsdp', 20), f'{sys.argv[1]}/moved', should_stop=lambda s: s >= 10)
s = train.train_and_evaluate(config('model', 20), f'{sys.argv[1]}/moved')
out['moved'] = {'resumed_from_step': s['resumed_from_step'], 'mesh': s['mesh']}
print(json.dumps(out))
"""


@pytest.fixture(scope='module')
def eight_devices(tmp_path_factory):
  """mnist_ae:tiny on 8 fake CPU devices (a subprocess), replicated, fsdp, split over 'model', and
  one run moved from fsdp to 'model' at step 10: (its directory, what the script printed)."""
  base = tmp_path_factory.mktemp('placements')
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', JAX_PLATFORMS='cpu',
             AELAB_DATA_DIR=str(DATA))
  out = subprocess.run([sys.executable, '-c', _PLACEMENTS, str(base)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return base, json.loads(out.stdout.strip().splitlines()[-1])


def test_fsdp_and_model_placements_train_the_same_parameters_on_less_memory(eight_devices):
  base, got = eight_devices
  assert got['model']['mesh'] == {'data': 4, 'model': 2} and got['fsdp']['mesh'] == {'data': 8}
  full = got['replicated']['param_bytes_per_device']
  # mnist_ae:tiny: every kernel splits 8 (or 2) ways; the biases of 256/64/784 units too.
  assert got['fsdp']['param_bytes_per_device'] == full // 8
  assert got['model']['param_bytes_per_device'] == full // 2
  assert got['fsdp']['opt_state_bytes_per_device'] < got['replicated']['opt_state_bytes_per_device'] / 7
  assert got['moved'] == {'resumed_from_step': 10, 'mesh': {'data': 4, 'model': 2}}
  params = {name: checkpoint.Checkpoints(base / name).restore_raw(20)[1]['state']['params']
            for name in ('replicated', 'fsdp', 'model', 'moved')}
  for name in ('fsdp', 'model', 'moved'):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 params[name], params['replicated'])


def test_mesh_and_rules_are_checked_in_one_line():
  with pytest.raises(AelabError, match=r'must multiply to 1'):
    sharding.make_mesh((('data', 3),))
  with pytest.raises(AelabError, match="must name the axis 'data'"):
    sharding.make_mesh((('batch', -1),))
  mesh = sharding.make_mesh()
  with pytest.raises(AelabError, match="'shard' is not a placement; valid: replicate, fsdp, model"):
    sharding.check_rules((('.*', 'shard'),), mesh)
  with pytest.raises(AelabError, match="splits over the mesh axis 'model', which train.mesh"):
    sharding.check_rules((('.*', 'model'),), mesh)
  with pytest.raises(AelabError, match='must be \\(regex, how\\)'):
    sharding.check_rules((('[', 'fsdp'),), mesh)


def test_a_placement_splits_the_largest_dimension_that_divides():
  import re
  import types
  mesh = types.SimpleNamespace(shape={'data': 8, 'model': 16})
  rules = ((re.compile('dec.*'), 'model'), (re.compile('.*/bias'), 'replicate'),
           (re.compile('.*'), 'fsdp'))
  assert sharding.spec_for('enc/kernel', (784, 256), rules, mesh) == sharding.P('data', None)
  assert sharding.spec_for('enc/kernel', (36, 256), rules, mesh) == sharding.P(None, 'data')
  assert sharding.spec_for('dec/kernel', (64, 784), rules, mesh) == sharding.P(None, 'model')
  assert sharding.spec_for('dec/kernel', (3, 10), rules, mesh) == sharding.P()  # too small
  assert sharding.spec_for('enc/bias', (256,), rules, mesh) == sharding.P()
  assert sharding.spec_for('enc/scale', (10,), rules, mesh) == sharding.P()
