"""The device mesh and the shardings the trainer states: batches split over axis `data`,
parameters (and their optimizer state) placed by the rules in config.train.sharding."""

from __future__ import annotations

import re

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from aelab.errors import AelabError

DATA_AXIS = 'data'
_AXIS_OF = {'fsdp': DATA_AXIS, 'model': 'model'}   # strategy -> the mesh axis it splits over


def make_mesh(axes=((DATA_AXIS, -1),)) -> Mesh:
  """The mesh over every device of every process from (name, size) pairs; one size may be -1
  (the devices left). AelabError when the sizes do not multiply to the device count."""
  n = jax.device_count()
  try:
    names, sizes = zip(*[(str(a), int(b)) for a, b in axes]) if axes else ((), ())
  except (TypeError, ValueError):
    raise AelabError(f'train.mesh = {axes!r}; give (name, size) pairs, e.g. '
                     "(('data', -1),) or (('data', 4), ('model', 2))") from None
  if DATA_AXIS not in names or len(set(names)) != len(names):
    raise AelabError(f'train.mesh = {axes!r} must name the axis {DATA_AXIS!r} once (batches are '
                     'split over it), and each axis once')
  known = int(np.prod([s for s in sizes if s != -1]))
  if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes) or known <= 0 or n % known:
    raise AelabError(f'train.mesh = {axes!r} does not fit the {n} devices: the sizes must '
                     f'multiply to {n} (at most one -1: the devices left)')
  shape = tuple(n // known if s == -1 else s for s in sizes)
  if int(np.prod(shape)) != n:
    raise AelabError(f'train.mesh = {axes!r} does not fit the {n} devices: the sizes must '
                     f'multiply to {n}')
  return Mesh(np.asarray(jax.devices()).reshape(shape), names)


def check_rules(rules, mesh: Mesh) -> tuple[tuple[re.Pattern, str], ...]:
  """config.train.sharding as compiled (regex, strategy) pairs, checked against the mesh."""
  out = []
  for rule in rules or ():
    try:
      pattern, how = rule
      compiled = re.compile(str(pattern))
    except (TypeError, ValueError, re.error) as e:
      raise AelabError(f'train.sharding rule {rule!r} must be (regex, how): {e}') from None
    if how not in ('replicate', *_AXIS_OF):
      raise AelabError(f'train.sharding rule {rule!r}: {how!r} is not a placement; valid: '
                       'replicate, fsdp, model')
    if how != 'replicate' and _AXIS_OF[how] not in mesh.axis_names:
      raise AelabError(f'train.sharding rule {rule!r} splits over the mesh axis '
                       f'{_AXIS_OF[how]!r}, which train.mesh = {mesh.axis_names} lacks')
    out.append((compiled, how))
  return tuple(out)


def spec_for(path: str, shape: tuple[int, ...], rules, mesh: Mesh) -> P:
  """The first rule matching `path` places it: 'replicate', or split over its axis along the
  largest dimension that divides by the axis size (none: replicated, e.g. a small bias)."""
  how = next((h for pattern, h in rules if pattern.fullmatch(path)), 'replicate')
  if how == 'replicate':
    return P()
  axis = _AXIS_OF[how]
  size = mesh.shape[axis]
  for d in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[d] >= size and shape[d] % size == 0:
      return P(*[axis if i == d else None for i in range(len(shape))])
  return P()


def state_shardings(abstract_state, rules, mesh: Mesh):
  """NamedShardings for a TrainState: each parameter by the rules on its path
  ('layer/kernel'); each optimizer-state leaf as the parameter whose path ends its own
  (Adam's mu and nu follow their parameter), by the same rule on its own shape; the rest (step,
  counts, rng) replicated."""
  from aelab.trainer.checksums import path_name
  params = [path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(abstract_state.params)[0]]

  def place(path, leaf, param: bool):
    name = path_name(path)
    owner = name if param else next((q for q in params if name == q or name.endswith('/' + q)),
                                    None)
    if owner is None or not leaf.shape:
      return NamedSharding(mesh, P())
    return NamedSharding(mesh, spec_for(owner, tuple(leaf.shape), rules, mesh))

  rep = NamedSharding(mesh, P())
  return abstract_state.replace(
      step=rep, rng=rep, stats=jax.tree.map(lambda _: rep, abstract_state.stats),
      params=jax.tree_util.tree_map_with_path(lambda p, a: place(p, a, True),
                                              abstract_state.params),
      opt_state=jax.tree_util.tree_map_with_path(lambda p, a: place(p, a, False),
                                                 abstract_state.opt_state))


def bytes_per_device(tree) -> int:
  """The most bytes of `tree`'s arrays that any one local device holds."""
  held: dict = {}
  for a in jax.tree.leaves(tree):
    for shard in a.addressable_shards:
      held[shard.device] = held.get(shard.device, 0) + shard.data.nbytes
  return max(held.values(), default=0)


def data_size(mesh: Mesh) -> int:
  """How many ways a batch is split: the size of the mesh's 'data' axis."""
  return mesh.shape[DATA_AXIS]


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, leading_dims: int = 0) -> NamedSharding:
  """Shards the batch axis, which follows `leading_dims` unsharded axes (e.g. 1 for [steps, B, ...])."""
  return NamedSharding(mesh, P(*([None] * leading_dims), DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, what: str = 'train.batch_size') -> None:
  n = data_size(mesh)
  if batch_size <= 0 or batch_size % n:
    raise AelabError(f'{what} = {batch_size} must be a positive multiple of the number of devices '
                     f'it is split over ({n}, the mesh axis {DATA_AXIS!r})')


def put(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """Places a host array that every process holds in full; each process copies only its shards."""
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def put_rows(a: np.ndarray, idx: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """a[idx] placed with `sharding`, each process gathering only the rows its devices hold."""
  return jax.make_array_from_callback(idx.shape + a.shape[1:], sharding,
                                      lambda index: a[idx[index[:idx.ndim]]])


def put_tree(tree, sharding: NamedSharding):
  """`put` for every leaf of a pytree of host arrays."""
  return jax.tree.map(lambda a: put(np.asarray(a), sharding), tree)
