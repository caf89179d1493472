"""Training batches as a pure function of the step: rows of the training set on the devices or
fed from the host, or rows generated on the devices from the step (a streamed source)."""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np

from aelab import data
from aelab.trainer import sharding


@flax.struct.dataclass
class Rows:
  """The row order of the epochs a block can touch, on the devices: the train block reads batch
  t's rows from it at its own step, so a block sends nothing to the devices (only a new epoch
  does). `k` (the block's steps) and `steps_per_epoch` are static."""
  order: jax.Array   # [m * steps_per_epoch, B]: epochs e0 .. e0 + m - 1, e0 = step // spe
  k: int = flax.struct.field(pytree_node=False)
  steps_per_epoch: int = flax.struct.field(pytree_node=False)

  def at(self, step: jax.Array) -> jax.Array:
    """The [k, B] row indices of steps step .. step + k - 1 (step: the block's first step)."""
    return jax.lax.dynamic_slice_in_dim(self.order, step % self.steps_per_epoch, self.k)

  def batch(self, source: dict, rows: jax.Array, spec) -> dict:
    """One step's batch: its rows of the device-resident training set (`rows`: one of `at`'s),
    gathered from a flat [N, D] view (XLA:CPU gathers a trailing dimension of 1, as in
    [N, 28, 28, 1], several times slower)."""
    return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(
        a.reshape(a.shape[0], -1)[rows].reshape(rows.shape + a.shape[1:]), spec), source)


@flax.struct.dataclass
class Keys:
  """A streamed training set's steps: batch t is `sample(source, fold_in(key, t), B)`, generated
  on the devices inside the train step, so a block sends nothing and a resumed run draws exactly
  the rows an unbroken one would."""
  key: jax.Array     # the stream's key (raw uint32 [2]), from the run's seed
  k: int = flax.struct.field(pytree_node=False)
  batch_size: int = flax.struct.field(pytree_node=False)
  sample: object = flax.struct.field(pytree_node=False)

  def at(self, step: jax.Array) -> jax.Array:
    """The [k] steps step .. step + k - 1."""
    return step + jnp.arange(self.k, dtype=jnp.int32)

  def batch(self, source: dict, step: jax.Array, spec) -> dict:
    x = self.sample(source, jax.random.fold_in(self.key, step), self.batch_size)
    return {'x': jax.lax.with_sharding_constraint(x, spec)}


class Batches:
  """Batch t of the run is rows perm_e[i*B:(i+1)*B] with e, i = divmod(t, steps_per_epoch):
  a pure function of the step, so a resumed run sees exactly the data an unbroken one would.

  A batch is {'x': rows} plus 'y' (labels) when the split has them. With `on_device`, the
  training set is placed on the devices once (replicated), with the row order of the epochs the
  current block can touch (`Rows`, sent once per epoch); otherwise each block's batches are
  gathered on the host, each process gathering only the rows its own devices take.
  """

  def __init__(self, split: data.Split, batch_size: int, seed: int, mesh, on_device: bool):
    self.arrays = {'x': split.x} if split.y is None else {'x': split.x, 'y': split.y}
    self.n, self.batch_size, self.seed = len(split), batch_size, seed
    self.steps_per_epoch = self.n // batch_size
    self._spec = sharding.batch_sharding(mesh, 1)
    self.on_device = on_device
    self._device = sharding.put_tree(self.arrays, sharding.replicated(mesh)) if on_device else None
    self._perms: dict[int, np.ndarray] = {}     # epoch -> its batches' rows [spe, B]
    self._rows_key, self._rows = None, None      # the Rows' epochs (e0, m) and order on the devices

  def _epochs(self, e0: int, m: int) -> list[np.ndarray]:
    """The batches' rows [spe, B] of epochs e0 .. e0 + m - 1, each computed once while in use."""
    used = self.steps_per_epoch * self.batch_size
    self._perms = {e: self._perms.get(e) for e in range(e0, e0 + m)}
    for e, perm in self._perms.items():
      if perm is None:
        perm = data.epoch_permutation(self.n, self.seed, e)[:used]
        self._perms[e] = perm.reshape(self.steps_per_epoch, self.batch_size).astype(np.int32)
    return list(self._perms.values())

  def indices(self, start: int, k: int) -> np.ndarray:
    """[k, B] rows of steps start .. start + k - 1."""
    i0 = start % self.steps_per_epoch
    return self.order(*self.epochs(start, k))[i0:i0 + k]

  def epochs(self, start: int, k: int) -> tuple[int, int]:
    """(e0, m): the epochs e0 .. e0 + m - 1 that steps start .. start + k - 1 can reach, with m
    fixed by k (so that the order's shape changes only with the block size)."""
    return start // self.steps_per_epoch, 1 + -(-(k - 1) // self.steps_per_epoch)

  def order(self, e0: int, m: int) -> np.ndarray:
    """[m * spe, B]: the batches' rows of epochs e0 .. e0 + m - 1, one after the other."""
    return np.concatenate(self._epochs(e0, m))

  def block(self, start: int, k: int) -> tuple[dict, Rows | None]:
    """(source, rows) for the train block covering steps [start, start + k): the training set on
    the devices and its `Rows`, or the batches themselves and None."""
    if self._device is None:
      idx = self.indices(start, k)
      return {key: sharding.put_rows(a, idx, self._spec) for key, a in self.arrays.items()}, None
    key = self.epochs(start, k)
    if key != self._rows_key:
      self._rows_key, self._rows = key, sharding.put(self.order(*key), self._spec)
    return self._device, Rows(self._rows, k, self.steps_per_epoch)


STREAM = 0x57ea  # fold_in(PRNGKey(seed), STREAM): a streamed training set's key


def stream_key(seed: int) -> jax.Array:
  """A streamed training set's key: batch t of the run is drawn from fold_in(it, t)."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), STREAM)


class Streamed:
  """A streamed training set (data.Stream): its generator's arrays on the devices (replicated),
  each block's batches drawn there from the steps' keys (`Keys`). No epochs: a run's length is
  train.num_steps."""
  on_device = True
  steps_per_epoch = None

  def __init__(self, stream, batch_size: int, seed: int, mesh, place: bool = True):
    self.stream, self.batch_size = stream, batch_size
    self.key = np.asarray(stream_key(seed))
    self.arrays = stream.arrays
    if place:
      self.key = sharding.put(self.key, sharding.replicated(mesh))
      self.arrays = sharding.put_tree(stream.arrays, sharding.replicated(mesh))

  def block(self, start: int, k: int) -> tuple[dict, Keys]:
    del start  # the keys are read at the state's step, on the devices
    return self.arrays, Keys(self.key, k, self.batch_size, self.stream.sample)
