"""What every evaluator is built from: the dataset, the one forward pass, the mesh, the workdir;
and how an evaluator runs its jitted step over the batches of a split (`run_batches`)."""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import jax

from aelab import data
from aelab.errors import AelabError
from aelab.trainer import sharding

SPLITS = ('train', 'val', 'test')


@dataclasses.dataclass(frozen=True)
class Context:
  config: Any                       # the run's ConfigDict
  dataset: data.Dataset
  forward: Any                      # aelab.trainer.forward.Forward
  mesh: Any
  unit_interval: bool               # the data lie in [0, 1] (bce metrics apply)
  workdir: pathlib.Path | None = None
  total_steps: int | None = None    # the training run's last step (None: not in a training run)


def split_of(dataset: data.Dataset, name: str) -> data.Split:
  if name not in SPLITS:
    raise AelabError(f'unknown split {name!r}; valid splits: {", ".join(SPLITS)}')
  return getattr(dataset, name)


def batches(split: data.Split, batch_size: int, mesh,
            truth: bool = False) -> Iterator[tuple[int, int, dict]]:
  """(index, rows, batch) for consecutive slices of `batch_size` rows of `split`: the batch
  {'x'[, 'y'][, 'truth_codes' (with `truth`)]} on the devices, sharded on `data` when its rows
  divide by the device count, else replicated. Evaluators fold `index` into a fixed key (the
  same noise for every model)."""
  n_dev = sharding.data_size(mesh)
  for index, start in enumerate(range(0, len(split), batch_size)):
    rows = slice(start, start + batch_size)
    batch = {'x': split.x[rows]} if split.y is None else {'x': split.x[rows], 'y': split.y[rows]}
    if truth:
      batch['truth_codes'] = split.truth_codes[rows]
    n = len(batch['x'])
    spec = sharding.batch_sharding(mesh) if n % n_dev == 0 else sharding.replicated(mesh)
    yield index, n, sharding.put_tree(batch, spec)


def run_batches(step: Callable, params, prep, split: data.Split, batch_size: int, mesh,
                *args, truth: bool = False) -> tuple[dict[str, float], dict[str, Any]]:
  """Runs `step(params, prep, batch, *args, index) -> (means, sums)` over the batches of a
  non-empty `split` (with `truth`, each batch has the rows' true codes); returns (each of
  `means` averaged over the split's examples, as floats; each of `sums` totalled over its
  batches, as host arrays)."""
  mean_sums, totals = {}, {}
  for index, n, batch in batches(split, batch_size, mesh, truth):
    means, sums = step(params, prep, batch, *args, index)
    for k, v in means.items():
      mean_sums[k] = mean_sums.get(k, 0.0) + v * n
    for k, v in sums.items():
      totals[k] = totals[k] + v if k in totals else v
  mean_sums, totals = jax.device_get((mean_sums, totals))
  return {k: float(v) / len(split) for k, v in mean_sums.items()}, totals
