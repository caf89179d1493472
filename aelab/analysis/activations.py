"""The `activations` source: the activations of one layer of a trained aelab run, as a dataset
(what a sparse autoencoder is trained on).

    config.dataset = defaults.dataset('activations')
    config.dataset.run = 'workdirs/mnist_ae'   # the trained run's workdir (required)
    config.dataset.layer = 'code'               # '1', '2', ... (1 = the first encoder layer)
    config.dataset.step = 0                     # the checkpoint; 0 = the latest

The run's own dataset is loaded again from the run's config and seed (so the splits hold the
rows the run was trained and evaluated on), and each split becomes the activations
`aelab.analysis.runs.features` gives for its rows (float32 [N, width], the run's preprocessing
applied first), with the split's labels. The seed passed to `load` does not reshuffle anything.

`layer` is a string field ('code' or digits) as ml_collections fixes a field's type by its default;
an int is accepted too where the config is a plain dict. `step` is 0 for the latest checkpoint
(a None default would make the field a string).
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from aelab.analysis import runs
from aelab.config import checks
from aelab.data import options
from aelab.data.dataset import Dataset, Split
from aelab.errors import AelabError

SOURCES: dict[str, dict[str, Any]] = {'activations': {'run': None, 'layer': '1', 'step': 0}}
SPLITS = ('train', 'val', 'test')


def load(cfg: Mapping[str, Any], seed: int) -> Dataset:
  """Activations of layer `cfg.layer` of the run in `cfg.run` on each split of its dataset."""
  del seed  # the run's own splits, from its own seed
  name, fields = options.resolve(cfg, SOURCES, 'activations.load')
  workdir = options.string(fields, 'run')
  if not workdir:
    raise AelabError('dataset.run is required: the workdir of a trained aelab run')
  step = options.count(fields, 'step')
  layer = _layer(fields['layer'])
  path = pathlib.Path(workdir).expanduser().resolve()
  if not (path / 'checkpoints').is_dir():
    raise AelabError(f'dataset.run={workdir!r} is not a trained aelab run ({path / "checkpoints"} '
                     'is missing); set it to the workdir that python -m aelab.run trained into')
  run = runs.load(path, step=step or None)
  ds = run.dataset
  splits = {}
  for split_name in SPLITS:
    split = getattr(ds, split_name)
    x = runs.check_rows(run, split.x, f'the {split_name} split of {run.workdir}')
    splits[split_name] = Split(np.asarray(runs.features(run, x, layer), np.float32), split.y)
  width = splits['train'].x.shape[1]
  source = {'name': name, 'run': str(run.workdir), 'layer': layer, 'step': run.step,
            'dataset': ds.source}
  return Dataset(name=name, train=splits['train'], val=splits['val'], test=splits['test'],
                 feature_shape=(width,), value_range=None, feature_names=None,
                 num_classes=ds.num_classes, source=source)


def _layer(value: Any) -> int | str:
  """'code', or an encoder layer number (an int or digits) as an int; else a one-line error."""
  if value == 'code':
    return 'code'
  if isinstance(value, str) and value.strip().isdigit():
    value = int(value)
  return checks.integer(value, 'dataset.layer', low=1, high=checks.INT32_MAX,
                        hint=" (1 is the first encoder layer), or 'code'")

