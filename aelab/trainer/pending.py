"""Per-step train metrics not yet logged: averaged at the next log step, saved with a checkpoint.

A checkpoint between two log steps carries them, so a resumed run logs the same averages as a
run that never stopped.
"""

from __future__ import annotations

import numpy as np


class Pending:
  def __init__(self):
    self._blocks: list[dict] = []   # per block: {metric: [k] values}, on the device or the host

  def add(self, values: dict) -> None:
    self._blocks.append(values)

  def _host(self) -> dict[str, np.ndarray]:
    blocks = [{key: np.asarray(v) for key, v in b.items()} for b in self._blocks]  # < device_get
    if not blocks:
      return {}
    return {key: np.concatenate([np.atleast_1d(b[key]) for b in blocks], axis=-1)
            for key in blocks[0]}

  def take(self) -> dict[str, np.ndarray]:
    """Every pending step's values, concatenated per metric along the last (step) axis ([n], or
    [replicas, n] for replicas trained together); empties the list."""
    values = self._host()
    self._blocks = []
    return values

  def to_json(self, replica: int | None = None) -> dict[str, list[float]]:
    """The pending values (of one replica) as JSON numbers (float32 round-trips exactly through a
    double)."""
    host = self._host()
    return {key: [float(v) for v in (values if replica is None else values[replica])]
            for key, values in host.items()}

  def restore(self, values: dict[str, list] | None) -> None:
    """Pending values saved by `to_json`: a dict of lists, or of lists per replica."""
    self._blocks = [{k: np.asarray(v, np.float32) for k, v in values.items()}] if values else []
