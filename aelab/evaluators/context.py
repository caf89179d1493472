"""What every evaluator is built from: the dataset, the one forward pass, the mesh, the workdir."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from aelab import data
from aelab.errors import AelabError

SPLITS = ('train', 'val', 'test')


@dataclasses.dataclass(frozen=True)
class Context:
  config: Any                       # the run's ConfigDict
  dataset: data.Dataset
  forward: Any                      # aelab.trainer.forward.Forward
  mesh: Any
  unit_interval: bool               # the data lie in [0, 1] (bce metrics apply)
  workdir: pathlib.Path | None = None


def split_of(dataset: data.Dataset, name: str) -> data.Split:
  if name not in SPLITS:
    raise AelabError(f'unknown split {name!r}; valid splits: {", ".join(SPLITS)}')
  return getattr(dataset, name)
