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

_SCRIPT = """
import json, sys, jax
sys.path.insert(0, 'tests')
from conftest import experiment
from aelab.trainer import train
config = experiment('mnist_ae')
config.train.update(batch_size=40, num_steps=20, progress=False)
config.evals.plots.every = -1
summary = train.train_and_evaluate(config, sys.argv[1])
print(json.dumps({'devices': jax.device_count(), 'summary_devices': summary['devices'],
                  'test': summary['test']}))
"""


def test_eight_devices_match_one(tmp_path):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', JAX_PLATFORMS='cpu',
             AELAB_DATA_DIR=str(DATA))
  out = subprocess.run([sys.executable, '-c', _SCRIPT, str(tmp_path / 'eight')], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  eight = json.loads(out.stdout.strip().splitlines()[-1])
  assert eight['devices'] == 8 and eight['summary_devices'] == 8

  config = experiment('mnist_ae')
  config.train.update(batch_size=40, num_steps=20, progress=False)
  config.evals.plots.every = -1
  one = train.train_and_evaluate(config, tmp_path / 'one')
  assert one['devices'] == 1
  for key in ('bce', 'mse', 'loss'):
    assert eight['test'][key] == pytest.approx(one['test'][key], rel=1e-4)
  params = [checkpoint.Checkpoints(tmp_path / d).restore_raw(20)[1]['state']['params']
            for d in ('eight', 'one')]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), *params)


def test_batch_size_must_divide_over_devices():
  mesh = sharding.make_mesh()
  with pytest.raises(AelabError, match='positive multiple of the number of devices'):
    sharding.check_batch_size(0, mesh)
