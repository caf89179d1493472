"""The device mesh and the shardings the trainer states: batches on axis `data`, params replicated."""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from aelab.errors import AelabError

DATA_AXIS = 'data'


def maybe_initialize_distributed() -> None:
  """Multi-host runs (TPU pod slices, multi-node GPU): set AELAB_DISTRIBUTED=1 on every host.

  jax.distributed.initialize() then reads the coordinator from the environment (TPU VMs,
  SLURM, or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID).
  """
  if os.environ.get('AELAB_DISTRIBUTED', '') not in ('', '0'):
    jax.distributed.initialize()


def make_mesh() -> Mesh:
  """A 1-D mesh over every device of every host, axis `data`."""
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, leading_dims: int = 0) -> NamedSharding:
  """Shards the batch axis, which follows `leading_dims` unsharded axes (e.g. 1 for [steps, B, ...])."""
  return NamedSharding(mesh, P(*([None] * leading_dims), DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, what: str = 'train.batch_size') -> None:
  n = mesh.devices.size
  if batch_size <= 0 or batch_size % n:
    raise AelabError(f'{what} = {batch_size} must be a positive multiple of the number of devices ({n})')


def put(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """Places a host array that every process holds in full; each process copies only its shards."""
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def put_tree(tree, sharding: NamedSharding):
  """`put` for every leaf of a pytree of host arrays."""
  return jax.tree.map(lambda a: put(np.asarray(a), sharding), tree)
