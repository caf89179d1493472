"""The feature network of the Fréchet distances (aelab/evaluators/frechet.py): a classifier that
aelab trains itself, with a fixed recipe, on a dataset's training split, once per dataset, and
keeps in the cache.

    net = feature_net.get(config.dataset, feature_net.recipe(hidden=(256, 128), epochs=10))
    f = net.features(x)        # [N, hidden[-1]]: its last hidden layer on raw rows (input units)
    net.accuracy               # its accuracy on the dataset's test split (val when test is empty)

The recipe (RECIPE): model 'classifier' (dense 256-128, relu), preprocessing 'auto' (none for
data in [0, 1], else standardize), loss softmax_cross_entropy, Adam at 1e-3, batch 128, 10
epochs, seed 0: an ordinary aelab run (aelab.trainer.train) of the run's dataset config with the
recipe's seed, whatever the seed of the run being evaluated, so that every model of a dataset is
measured with the same network. A stale temporary directory (a killed process's, older than
STALE_S) is removed by the next training of the same net.

Cache: $AELAB_CACHE_DIR/feature_nets/<dataset name>-<16 hex>/ (default ~/.cache/aelab/...), the
hex an md5 of the training split's rows and labels and of the recipe; the directory is the run's
workdir (checkpoint, config.json, summary.json, metrics.jsonl) plus feature_net.json (recipe,
accuracy, training time). A net is trained in a temporary sibling directory, then renamed into
place: of two processes that train the same net at once the first rename wins and the other
uses the winner's, never a half-written one. The dataset's training split must have labels.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import shutil
import socket
import time
import uuid

import jax
import ml_collections
import numpy as np

from aelab import data, files
from aelab.analysis import runs
from aelab.config import checks, defaults
from aelab.data import locate
from aelab.errors import AelabError

VERSION = 1   # bump when the recipe's meaning changes: nets of another version are not reused
RECIPE = dict(model='classifier', hidden=(256, 128), activation='relu', preprocessing='auto',
              loss='softmax_cross_entropy', optimizer='adam', learning_rate=1e-3, batch_size=128,
              epochs=10, seed=0)
INFO = 'feature_net.json'
STALE_S = 86400   # a temporary training directory this old was left by a killed process


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureNet:
  directory: pathlib.Path
  run: runs.Run
  accuracy: float       # on the test split (val when test is empty); NaN with neither
  train_s: float        # seconds its training took (when it was trained)
  trained_now: bool     # this call trained it (False: read from the cache)

  def features(self, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Its last hidden layer [N, width] (float64) on raw rows x in input units (the
    classifier's code: the softmax head's input)."""
    x = np.asarray(x, np.float32).reshape(len(x), *self.run.feature_shape)
    encode, params, prep = _encode_fn(self.run.forward), self.run.params, self.run.prep
    parts = [np.asarray(encode(params, prep, x[i:i + batch_size]), np.float64)
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts).reshape(len(x), -1)


@functools.lru_cache(maxsize=None)
def _encode_fn(forward):
  return jax.jit(forward.encode)


def recipe(hidden=RECIPE['hidden'], epochs: int = RECIPE['epochs']) -> dict:
  """RECIPE with these widths and epochs (the frechet evaluator's feature_hidden and
  feature_epochs), checked."""
  widths = checks.widths(hidden, 'the frechet evaluator\'s feature_hidden', 'hidden width',
                         empty='the feature net needs a hidden layer (its last one gives the '
                               'features), e.g. (256, 128)')
  epochs = checks.integer(epochs, 'the frechet evaluator\'s feature_epochs', low=1,
                          high=checks.INT32_MAX)
  return {**RECIPE, 'hidden': list(widths), 'epochs': epochs}


def cache_root() -> pathlib.Path:
  return locate.cache_dir('feature_nets')


def key(dataset: data.Dataset, rec: dict) -> str:
  """<dataset name>-<md5 of the training rows, labels and recipe, 16 hex>."""
  h = hashlib.md5(json.dumps({'version': VERSION, 'recipe': rec}, sort_keys=True).encode())
  for a in (dataset.train.x, dataset.train.y):
    a = np.ascontiguousarray(a)
    h.update(f'{a.dtype}{a.shape}'.encode())
    h.update(a.tobytes())
  return f'{dataset.name}-{h.hexdigest()[:16]}'


def get(dataset_config, rec: dict, dataset: data.Dataset | None = None,
        progress: bool = False) -> FeatureNet | None:
  """The feature net of `dataset_config` with recipe `rec`: from the cache, else trained now;
  None when a stop request (SIGTERM, SIGINT) interrupted its training (the run then stops as
  it does at any boundary, and trains it again when resumed). `dataset`: that config already
  loaded with the recipe's seed (else it is loaded here)."""
  dataset = dataset or data.load(dataset_config, seed=rec['seed'])
  if dataset.train.y is None:
    raise AelabError(f'the frechet evaluator\'s feature net is a classifier trained on the '
                     f'labels of dataset {dataset.name!r}, whose training split has none')
  final = cache_root() / key(dataset, rec)
  trained = not (final / INFO).exists()
  if trained and not _train(_config(dataset_config, rec, dataset, progress), final):
    return None
  info = files.read_json(final / INFO)
  return FeatureNet(directory=final, run=runs.load(final), accuracy=float(info['accuracy']),
                    train_s=float(info['train_s']), trained_now=trained)


def _config(dataset_config, rec: dict, dataset: data.Dataset,
            progress: bool) -> ml_collections.ConfigDict:
  """The aelab run of the recipe on `dataset_config`."""
  ys = [s.y for s in (dataset.train, dataset.val, dataset.test) if s.y is not None and len(s.y)]
  classes = max(int(dataset.num_classes or 0), max(int(y.max()) for y in ys) + 1, 2)
  split = 'test' if len(dataset.test) else 'val'
  given = dataset_config.to_dict() if hasattr(dataset_config, 'to_dict') else dict(dataset_config)
  config = ml_collections.ConfigDict()
  config.seed = rec['seed']
  config.dataset = ml_collections.ConfigDict(given)
  config.preprocessing = _preprocessing(rec['preprocessing'], dataset)
  config.model = defaults.model(rec['model'], hidden=tuple(rec['hidden']),
                                activation=rec['activation'], classes=classes)
  config.loss = defaults.loss(**{rec['loss']: dict(weight=1.0)})
  config.optimizer = defaults.optimizer(name=rec['optimizer'], learning_rate=rec['learning_rate'])
  config.train = defaults.train(batch_size=min(rec['batch_size'], len(dataset.train)),
                                num_epochs=rec['epochs'], log_every=100, checkpoint_every=0,
                                keep_checkpoints=1, progress=progress)
  scored = len(getattr(dataset, split)) > 0
  config.evals = ml_collections.ConfigDict(
      {split: defaults.evaluator('classification', split=split)} if scored else {})
  return config


def _preprocessing(mode: str, dataset: data.Dataset) -> str:
  """'auto': none for data in [0, 1] (images: a pixel seldom inked in training is not blown up
  when a sample inks it), else standardize."""
  if mode != 'auto':
    return mode
  r = dataset.value_range
  return 'none' if r is not None and r[0] >= 0 and r[1] <= 1 else 'standardize'


def _train(config: ml_collections.ConfigDict, final: pathlib.Path) -> bool:
  """Trains `config` in a temporary sibling of `final`, writes INFO, renames it into place (or
  drops it when another process got there first); False when a stop request interrupted it."""
  from aelab.trainer import train  # the trainer builds evaluators: imported when needed
  if jax.process_count() > 1:
    raise AelabError(f'the frechet evaluator\'s feature net is not cached ({final}) and a run of '
                     f'{jax.process_count()} processes cannot train it; run the evaluator once '
                     'in a single-process run of this dataset first')
  _drop_stale(final)
  tmp = final.parent / f'.{final.name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}'
  try:
    start = time.time()
    summary = train.train_and_evaluate(config, tmp)
    if 'interrupted' in summary:
      return False
    split = next(iter(config.evals), None)
    files.write_json(tmp / INFO, {
        'recipe': _recipe_of(config), 'version': VERSION, 'dataset': config.dataset.name,
        'accuracy_split': split,
        'accuracy': (summary.get(split) or {}).get('accuracy', float('nan')),
        'train_s': time.time() - start, 'features': "the last hidden layer (layer 'code')"})
    try:
      os.rename(tmp, final)
    except OSError:
      if not (final / INFO).exists():
        raise
    return True
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def _drop_stale(final: pathlib.Path) -> None:
  """Creates the cache directory; removes temporary directories of `final` that a killed process
  left more than STALE_S ago."""
  final.parent.mkdir(parents=True, exist_ok=True)
  for old in final.parent.glob(f'.{final.name}.*'):
    try:
      if time.time() - old.stat().st_mtime > STALE_S:
        shutil.rmtree(old, ignore_errors=True)
    except FileNotFoundError:  # another process removed it
      pass


def _recipe_of(config: ml_collections.ConfigDict) -> dict:
  return {'model': config.model.to_dict(), 'preprocessing': config.preprocessing,
          'optimizer': config.optimizer.to_dict(), 'train': {
              'batch_size': config.train.batch_size, 'num_epochs': config.train.num_epochs},
          'seed': config.seed}
