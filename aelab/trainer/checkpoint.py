"""Orbax checkpoints in `workdir/checkpoints`: train state, preprocessing statistics, run metadata."""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpoints:
  """Keeps the last `keep` checkpoints; each holds {'state', 'preprocessing'} arrays and JSON meta."""

  def __init__(self, workdir: str | pathlib.Path, keep: int = 3):
    self.directory = pathlib.Path(workdir).absolute() / 'checkpoints'
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_handlers={'arrays': ocp.StandardCheckpointHandler(),
                       'meta': ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, arrays: Any, meta: dict) -> None:
    """Saves asynchronously; `wait()` (or the next save) makes it durable."""
    self._manager.save(step, args=ocp.args.Composite(
        arrays=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)), force=True)

  def restore(self, step: int, abstract_arrays: Any) -> tuple[Any, dict]:
    """Restores onto the shardings of `abstract_arrays` (a pytree of jax.ShapeDtypeStruct)."""
    restored = self._manager.restore(step, args=ocp.args.Composite(
        arrays=ocp.args.StandardRestore(abstract_arrays), meta=ocp.args.JsonRestore()))
    return restored['arrays'], restored['meta']

  def restore_meta(self, step: int) -> dict:
    return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']

  def restore_raw(self, step: int) -> Any:
    """Restores the arrays as host numpy arrays in their saved structure (dicts and lists), on
    any machine: a checkpoint written on 8 devices or a GPU reads back on one CPU."""
    tree = self._manager.item_metadata(step)['arrays']
    tree = getattr(tree, 'tree', tree)
    target = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), tree)
    return self._manager.restore(step, args=ocp.args.Composite(
        arrays=ocp.args.StandardRestore(target)))['arrays']

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def abstract(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) of a pytree of jax arrays."""
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), tree)
