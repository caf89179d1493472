"""Training batches as a pure function of the step, on the devices or fed from the host."""

from __future__ import annotations

import jax
import numpy as np

from aelab import data
from aelab.trainer import sharding


class Batches:
  """Batch t of the run is rows perm_e[i*B:(i+1)*B] with e, i = divmod(t, steps_per_epoch):
  a pure function of the step, so a resumed run sees exactly the data an unbroken one would.

  A batch is {'x': rows} plus 'y' (labels) when the split has them. With `on_device`, the
  training set is placed on the devices once (replicated) and each block sends only its row
  indices; otherwise each block's batches are gathered on the host, each process gathering only
  the rows its own devices take.
  """

  def __init__(self, split: data.Split, batch_size: int, seed: int, mesh, on_device: bool):
    self.arrays = {'x': split.x} if split.y is None else {'x': split.x, 'y': split.y}
    self.n, self.batch_size, self.seed = len(split), batch_size, seed
    self.steps_per_epoch = self.n // batch_size
    self._spec = sharding.batch_sharding(mesh, 1)
    self.on_device = on_device
    self._device = sharding.put_tree(self.arrays, sharding.replicated(mesh)) if on_device else None
    self._epoch, self._perm = -1, None

  def indices(self, start: int, k: int) -> np.ndarray:
    out = np.empty((k, self.batch_size), np.int32)
    for j in range(k):
      epoch, i = divmod(start + j, self.steps_per_epoch)
      if epoch != self._epoch:
        self._epoch, self._perm = epoch, data.epoch_permutation(self.n, self.seed, epoch)
      out[j] = self._perm[i * self.batch_size:(i + 1) * self.batch_size]
    return out

  def block(self, start: int, k: int) -> tuple[dict, jax.Array | None]:
    """(source, idx) for the train block covering steps [start, start + k)."""
    idx = self.indices(start, k)
    if self._device is not None:
      return self._device, sharding.put(idx, self._spec)
    return {key: sharding.put_rows(a, idx, self._spec) for key, a in self.arrays.items()}, None
