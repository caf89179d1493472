"""What a run builds from its config before training: everything validated, nothing written.

Shared by the trainer (aelab/trainer/train.py) and the benchmark (aelab/bench).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from aelab import corruption, data, evaluators, losses, models, preprocessing, tracking
from aelab.config import checks, defaults
from aelab.data.dataset import Shards
from aelab.errors import AelabError
from aelab.trainer import optim, precision, sharding
from aelab.trainer.batches import Batches, Streamed
from aelab.trainer.forward import Forward
from aelab.trainer.shard_batches import ShardBatches
from aelab.trainer.state import TrainState, make_train_block

GROUPS = ('seed', 'dataset', 'preprocessing', 'model', 'loss', 'optimizer', 'train', 'evals',
          'input_noise')
_DEVICE_DATA = ('auto', 'yes', 'no')
_DEVICE_DATA_AUTO_BYTES = 1 << 30


@dataclasses.dataclass(frozen=True)
class Setup:
  config: ml_collections.ConfigDict
  dataset: data.Dataset
  prep: preprocessing.Preprocessor   # fitted on the training split (host arrays)
  forward: Forward
  tx: optax.GradientTransformation
  mesh: Any
  rules: tuple                       # config.train.sharding, compiled (sharding.check_rules)
  batches: Batches | Streamed | ShardBatches
  total_steps: int
  evaluators: list
  init_rng: jax.Array
  train_rng: jax.Array

  @functools.cached_property
  def from_data(self) -> dict:
    """Parameters a model takes from its training rows (an SAE's b_dec: the model's data_init),
    computed on first use: by a fresh state only, never on resume."""
    def rows():  # computed here, on the host, even when first asked for inside a trace
      with jax.ensure_compile_time_eval():
        return np.asarray(self.prep.apply(self.dataset.train.x[:20000])[0])
    return self.forward.model.data_init(rows)

  def init(self, rng: jax.Array, given: dict | None = None, from_data: bool = True) -> TrainState:
    """A fresh state: parameters from `rng` (those named in `given`, e.g. pretrained layers,
    taken from it instead; with `from_data`, those set from the data), the optimizer state, step
    0. Shapes alone (jax.eval_shape) need no `from_data`: it keeps the parameters' shapes."""
    example = jnp.asarray(self.prep.apply(self.dataset.train.x[:1])[0])
    params = self.forward.model.init(rng, example)['params']
    params = {**_merged(params, self.from_data if from_data else {}), **(given or {})}
    stats = self.forward.model.initial_stats()
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.tx.init(params),
                      rng=self.train_rng, stats=stats)

  def check_given(self, given: dict) -> None:
    """Given parameters must name layers of this model, with their shapes."""
    mine = jax.eval_shape(self.init, self.init_rng).params
    for name, tree in given.items():
      if name not in mine:
        raise AelabError(f'given parameters {name!r} are not a layer of this model; its layers: '
                         f'{", ".join(sorted(mine))}')
      want = jax.tree.map(lambda a: tuple(a.shape), mine[name])
      have = jax.tree.map(lambda a: tuple(np.shape(a)), tree)
      if want != have:
        raise AelabError(f'given parameters {name!r} have shapes {have}; the model\'s are {want}')

  def state_sharding(self, given: dict | None = None):
    """The NamedShardings of the train state, from the rules (sharding.state_shardings)."""
    abstract = jax.eval_shape(functools.partial(self.init, from_data=False), self.init_rng, given)
    return sharding.state_shardings(abstract, self.rules, self.mesh)

  def train_block(self):
    return make_train_block(self.forward, self.tx, self.mesh, self.config.train.scan_unroll,
                            state_sharding=self.state_sharding())

  def meta(self) -> dict:
    """The JSON saved with every checkpoint, for reading the run back without its config file."""
    return {'config': json.loads(self.config.to_json()),
            'preprocessing': self.prep.mode, 'preprocessing_formula': self.prep.describe(),
            'feature_shape': list(self.dataset.feature_shape), 'dataset': self.dataset.source}


def check_train(tc: ml_collections.ConfigDict) -> None:
  """Values of config.train that would pass type checks but break the run."""
  checks.fields(tc, defaults.TRAIN, 'train')
  positive = ('steps_per_call', 'keep_checkpoints')
  at_least_zero = ('batch_size', 'num_epochs', 'num_steps', 'log_every', 'checkpoint_every')
  for key in (*positive, *at_least_zero):  # steps are int32 on the devices (TrainState.step)
    checks.integer(tc[key], f'train.{key}', low=1 if key in positive else 0, high=checks.INT32_MAX)
  checks.choice(tc.device_data, _DEVICE_DATA, 'train.device_data')
  tracking.check(tc.writers)


def _unit_interval(dataset: data.Dataset) -> bool:
  r = dataset.value_range
  return r is not None and r[0] >= 0 and r[1] <= 1


def _param_names(model, prep: preprocessing.Preprocessor, dataset: data.Dataset) -> tuple[str, ...]:
  """The model's top-level parameter names (from shapes alone: nothing is computed)."""
  example = jnp.asarray(prep.apply(dataset.train.x[:1])[0])
  return tuple(jax.eval_shape(model.init, jax.random.PRNGKey(0), example)['params'])


def check(config: ml_collections.ConfigDict, dataset: data.Dataset) -> None:
  """Every check `build` makes, on a dataset already loaded, placing nothing on the devices
  (the points of a sweep, before any of them runs)."""
  build(config, dataset=dataset, place=False)


def build(config: ml_collections.ConfigDict, workdir: str | pathlib.Path | None = None,
          dataset: data.Dataset | None = None, place: bool = True) -> Setup:
  """Resolves and validates every config group (AelabError on any bad field) and, with `place`,
  puts the training set on the devices; `dataset`: the config's, when already loaded."""
  checks.fields(config, GROUPS, 'config')
  tc = config.train
  check_train(tc)
  checks.integer(config.seed, 'seed', low=0, high=checks.UINT32_MAX)
  preprocessing.check_mode(config.preprocessing)
  dataset = dataset or data.load(config.dataset, seed=config.seed)
  prep = preprocessing.Preprocessor.fit(config.preprocessing, dataset.train.x)
  model = models.build(config.model, dataset.feature_shape)
  model.check_data(dataset)
  noise = corruption.for_dataset(config.get('input_noise'), dataset, prep)
  unit = _unit_interval(dataset)
  loss_fn = losses.compose(config.loss, layer_activations=model.layer_activations(),
                           targets_in_unit_interval=unit and config.preprocessing == 'none',
                           has_labels=dataset.train.y is not None)
  mesh = sharding.make_mesh(tc.mesh)
  rules = sharding.check_rules(tc.sharding, mesh)
  batches = _batches(config, dataset, mesh, place)
  total_steps = tc.num_steps or tc.num_epochs * (batches.steps_per_epoch or 0)
  if total_steps <= 0:
    raise AelabError('train.num_steps (or num_epochs) must be positive')
  if total_steps > checks.INT32_MAX:
    raise AelabError(f'train.num_epochs = {tc.num_epochs} makes {total_steps} steps, more than '
                     f'2**31 - 1 (the step is an int32 on the devices); set fewer epochs')
  names = (_param_names(model, prep, dataset)
           if config.optimizer.get('frozen') or config.optimizer.get('groups') else None)
  tx = optim.make(config.optimizer, total_steps, param_names=names,
                  groups=model.param_groups(names) if names else None)
  forward = Forward(model, loss_fn, noise, precision.dtype(tc.compute_dtype))
  ctx = evaluators.Context(config=config, dataset=dataset, forward=forward, mesh=mesh,
                           unit_interval=unit, total_steps=total_steps,
                           workdir=None if workdir is None else pathlib.Path(workdir))
  evals = evaluators.build(config.get('evals') or {}, ctx)
  init_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  return Setup(config=config, dataset=dataset, prep=prep, forward=forward, tx=tx, mesh=mesh,
               rules=rules, batches=batches, total_steps=total_steps, evaluators=evals,
               init_rng=init_rng, train_rng=train_rng)


def _batches(config: ml_collections.ConfigDict, dataset: data.Dataset, mesh,
             place: bool) -> Batches | Streamed | ShardBatches:
  """The training batches: the training split's rows (on the devices or fed from the host),
  for a streamed dataset rows generated on the devices at each step, or for a sharded one
  (dataset npy with a directory) rows read from disk window by window and fed from the host."""
  tc = config.train
  if dataset.stream is not None:
    if not tc.batch_size or not tc.num_steps:
      raise AelabError(f'dataset {dataset.name!r} is streamed (each batch generated at its step): '
                       'set train.batch_size and train.num_steps (it has no epochs)')
    sharding.check_batch_size(tc.batch_size, mesh)
    return Streamed(dataset.stream, tc.batch_size, config.seed, mesh, place)
  if dataset.shards is not None:
    return _shard_batches(config, dataset.shards, mesh)
  batch_size = tc.batch_size or len(dataset.train)  # 0: the whole split (full-batch L-BFGS)
  if tc.batch_size == 0:
    batch_size -= batch_size % sharding.data_size(mesh)
  sharding.check_batch_size(batch_size, mesh)
  if len(dataset.train) < batch_size:
    raise AelabError(f'train.batch_size = {batch_size} exceeds the {len(dataset.train)} training '
                     'examples; lower it')
  on_device = {'auto': dataset.train.x.nbytes <= _DEVICE_DATA_AUTO_BYTES, 'yes': True, 'no': False}
  return Batches(dataset.train, batch_size, config.seed, mesh, place and on_device[tc.device_data])


def _shard_batches(config: ml_collections.ConfigDict, shards: Shards,
                   mesh) -> ShardBatches:
  """A sharded training set's batches: read from disk, never on the devices whole."""
  tc = config.train
  if not tc.batch_size or tc.device_data == 'yes':
    raise AelabError('a directory of .npy shards is read from disk a window at a time: set '
                     "train.batch_size > 0 and train.device_data to 'auto' or 'no'")
  sharding.check_batch_size(tc.batch_size, mesh)
  if len(shards) < tc.batch_size:
    raise AelabError(f'train.batch_size = {tc.batch_size} exceeds the {len(shards)} training '
                     'examples; lower it')
  return ShardBatches(shards, tc.batch_size, config.seed, mesh)


def param_count(params) -> int:
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))


def _merged(params: dict, update: dict) -> dict:
  """params with update's leaves put in place (nested: {'decoder_out': {'bias': b}} replaces that
  bias alone)."""
  out = dict(params)
  for k, v in update.items():
    out[k] = _merged(params[k], v) if isinstance(v, dict) and k in params else v
  return out
