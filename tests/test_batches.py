"""Batches: the rows of step t are perm_e[i*B:(i+1)*B], (e, i) = divmod(t, steps_per_epoch), on the
host and on the devices alike, across epoch boundaries; the devices get a new row order only
when a block reaches a new epoch."""

import jax
import numpy as np
import pytest

from aelab.data.dataset import Split, epoch_permutation
from aelab.trainer import sharding
from aelab.trainer.batches import Batches

pytestmark = pytest.mark.quick  # the fast tier: python -m pytest -m quick


def _expected(n, batch, seed, start, k):
  spe = n // batch
  rows = []
  for t in range(start, start + k):
    e, i = divmod(t, spe)
    rows.append(epoch_permutation(n, seed, e)[i * batch:(i + 1) * batch])
  return np.stack(rows)


@pytest.mark.parametrize('n,batch,k', [(10, 3, 5), (40, 4, 3), (12, 12, 4)])
def test_rows_on_the_devices_match_the_host_and_the_definition(n, batch, k):
  split = Split(np.arange(n, dtype=np.float32)[:, None] * 10.0, None)
  mesh = sharding.make_mesh()
  device = Batches(split, batch, 7, mesh, on_device=True)
  host = Batches(split, batch, 7, mesh, on_device=False)
  at = jax.jit(lambda rows, step: rows.at(step))
  for start in (0, 1, n // batch - 1, 2 * (n // batch) + 1, 17):
    want = _expected(n, batch, 7, start, k)
    np.testing.assert_array_equal(host.indices(start, k), want)
    source, rows = device.block(start, k)
    np.testing.assert_array_equal(np.asarray(at(rows, np.int32(start))), want)
    fed, none = host.block(start, k)
    assert none is None
    np.testing.assert_array_equal(np.asarray(fed['x'])[..., 0], want * 10.0)
    np.testing.assert_array_equal(np.asarray(source['x']), split.x)


def test_the_row_order_is_sent_once_per_epoch():
  split = Split(np.zeros((100, 2), np.float32), np.arange(100, dtype=np.int32))
  batches = Batches(split, 10, 0, sharding.make_mesh(), on_device=True)   # 10 steps an epoch
  orders = [batches.block(start, 2)[1].order for start in range(0, 30, 2)]
  sent = [i for i in range(1, len(orders)) if orders[i] is not orders[i - 1]]
  assert sent == [5, 10]  # steps 10 and 20 start epochs 1 and 2
