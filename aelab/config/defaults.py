"""Builders of every config group, jax-free: each returns a ConfigDict of the group's fields
and defaults with the given ones replaced; an unknown field is an error naming the valid ones.

    config.model = defaults.model('dense', hidden=(256, 64))
    config.loss = defaults.loss(reconstruction=dict(weight=1.0, kind='bce'))
    config.evals = defaults.evals(every=700)

A model's, a loss term's, an evaluator's and a dataset's fields are declared beside their code
and read from there by aelab.config.catalog; the tables here are the groups of the trainer
(TRAIN, OPTIMIZER, INPUT_NOISE; aelab/trainer and aelab/corruption.py read them) and of a
stacked autoencoder (STACK).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import ml_collections
from ml_collections import config_dict

from aelab.config import catalog, checks
from aelab.errors import AelabError

TRAIN = dict(
    batch_size=128,         # 0: the whole training split every step (full batch, e.g. L-BFGS)
    num_epochs=10,
    num_steps=0,            # > 0 overrides num_epochs
    steps_per_call=10,      # train steps fused into one jitted lax.scan call
    log_every=100,
    checkpoint_every=1000,  # a checkpoint is also saved at the end and on SIGTERM/SIGINT
    keep_checkpoints=3,
    progress=True,          # tqdm progress bar
    device_data='auto',     # keep the training set on the devices: auto (if <= 1 GiB), yes, no
    compute_dtype='float32',  # bfloat16: bf16 compute, float32 master weights, loss and metrics
    scan_unroll=1,          # lax.scan unroll of the block; XLA:CPU runs convolutions inside a
                            # rolled scan several times slower (jax-ml/jax#12868): unroll there
    mesh=(('data', -1),),   # device mesh axes (name, size), -1: the devices left; batches are
                            # split over 'data', e.g. (('data', 4), ('model', 2))
    sharding=(('.*', 'replicate'),),  # (regex on a parameter's path, how): the first match places
                            # it; 'replicate', 'fsdp' (split over 'data') or 'model' (over 'model')
    writers=('tensorboard',),  # where the scalars go besides metrics.jsonl: any of tensorboard,
                            # wandb (offline unless $WANDB_MODE says otherwise), mlflow
    mlflow_uri='',          # MLflow's store; '': $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in
                            # the sweep's directory, or the run's
)

OPTIMIZER = dict(
    name='adam',
    learning_rate=1e-3,
    schedule='constant',
    warmup_steps=0,
    momentum=0.9,        # sgd (0 = plain SGD) and rmsprop
    weight_decay=1e-4,   # adamw only; for L2 in the loss use the weight_decay loss term
    grad_clip=0.0,       # clip gradients to this global norm; 0 = no clipping
    adadelta_rho=0.9,    # adadelta only: decay of the running averages (H2O: 0.99)
    adadelta_eps=1e-6,   # adadelta only: smoothing term (H2O: 1e-8)
    lbfgs_memory=10,     # lbfgs only: the number of past updates kept (minFunc: 100)
    lbfgs_linesearch='zoom',  # lbfgs only: 'zoom' (strong Wolfe; learning_rate unused) or 'none'
                              # (fixed step learning_rate along the L-BFGS direction)
    frozen='',           # parameters kept unchanged: top-level names or groups, e.g. 'encoder'
    b1=0.9,              # adam / adamw: decay of the first moment
    b2=0.999,            # adam / adamw: decay of the second moment
    groups={},           # a parameter group with its own optimizer: {group: {field: value}}, the
                         # fields overriding these, e.g. FactorVAE's discriminator=dict(
                         # learning_rate=1e-4, b1=0.5, b2=0.9) (aelab/trainer/optim.py)
)

# Options every loss term takes besides its own (a term's own: its keyword defaults, read by
# aelab.config.catalog): the weight, and its linear warm-up from step 0.
LOSS_COMMON = ('weight', 'warmup_steps')

INPUT_NOISE = dict(
    binarize=False,     # dynamic binarization: each step sees a fresh Bernoulli(x) sample of
                        # [0, 1] data
    corruption='none',  # none, gaussian, masking, salt_and_pepper
    level=0.0,          # gaussian: noise std (noise factor); masking / salt_and_pepper: fraction
                        # of entries
    clip=True,          # gaussian: clip the noisy input to the training data's range
    train=True,         # corrupt the training inputs (False: a plain AE, still evaluated on
                        # corrupted inputs)
)

def _group(table: Mapping[str, Any], given: Mapping[str, Any], where: str,
           **head: Any) -> ml_collections.ConfigDict:
  checks.fields(given, table, where)
  return ml_collections.ConfigDict({**head, **table, **given})


def train(**fields: Any) -> ml_collections.ConfigDict:
  """config.train: batch size, steps, logging and checkpoint cadence, device options."""
  return _group(TRAIN, fields, 'train')


def optimizer(**fields: Any) -> ml_collections.ConfigDict:
  """config.optimizer: name, learning rate and schedule, and the optimizer's own options."""
  return _group(OPTIMIZER, fields, 'optimizer')


def model(name: str, **fields: Any) -> ml_collections.ConfigDict:
  """config.model: `name` (a kind of aelab/models) and that kind's fields."""
  return _group(catalog.options('model', name), fields, f'model {name!r}', name=name)


def input_noise(**fields: Any) -> ml_collections.ConfigDict:
  """config.input_noise: binarization and corruption of the model's inputs (aelab/corruption.py)."""
  return _group(INPUT_NOISE, fields, 'input_noise')


def dataset(name: str) -> ml_collections.ConfigDict:
  """config.dataset: `name` and that source's fields; None defaults (paths) are string fields
  not set."""
  fields = {k: config_dict.placeholder(str) if v is None else v
            for k, v in catalog.options('source', name).items()}
  return ml_collections.ConfigDict({'name': name, **fields})


def evaluator(type: str,  # pylint: disable=redefined-builtin
              **fields: Any) -> ml_collections.ConfigDict:
  """One entry of config.evals: ConfigDict(type=..., every=..., split=..., <type's fields>)."""
  return _group(catalog.options('evaluator', type), fields, f'evaluator {type!r}', type=type)


def evals(every: int = 1000, batch_size: int = 1000) -> ml_collections.ConfigDict:
  """config.evals: reconstruction on 'val' every `every` steps (and at the end), on 'test' and
  the plots at the end."""
  return ml_collections.ConfigDict(dict(
      val=evaluator('reconstruction', split='val', every=every, batch_size=batch_size),
      test=evaluator('reconstruction', split='test', every=0, batch_size=batch_size),
      plots=evaluator('plots')))


def loss(**terms: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """config.loss: each given term with its weight (a float) and every option filled in.

  E.g. loss(reconstruction=dict(weight=1, kind='bce')) gives
  {'reconstruction': {'weight': 1.0, 'kind': 'bce', 'reduction': 'mean'}}, so every option can be
  overridden on the command line. Option values are checked by aelab.losses.compose.
  """
  cfg = ml_collections.ConfigDict()
  for name, given in terms.items():
    opts = given.to_dict() if isinstance(given, ml_collections.ConfigDict) else dict(given)
    check_term(name, opts, need_weight=True)
    cfg[name] = ml_collections.ConfigDict(
        {'weight': float(opts.pop('weight')), **catalog.options('term', name), **opts})
  return cfg


def check_term(name: str, opts: Mapping[str, Any], need_weight: bool) -> None:
  """A loss term's name, its options' names, its weight (a finite number >= 0; 0 turns it off)
  and warmup_steps (an integer >= 0); the term's own values are its check's (aelab/losses)."""
  valid = catalog.options('term', name)
  unknown = sorted(set(opts) - set(valid) - set(LOSS_COMMON))
  if unknown:
    raise AelabError(f'unknown option {", ".join(map(repr, unknown))} of loss term {name!r}; '
                     f'valid options: {", ".join([*LOSS_COMMON, *valid])}')
  if 'weight' not in opts:
    if need_weight:
      raise AelabError(f'loss term {name!r} has no weight; give it one, e.g. '
                       f'--config.loss.{name}.weight=1.0 (0 turns it off)')
  else:
    checks.number(opts['weight'], f'the weight of loss term {name!r}', low=0.0,
                  hint=f' (0 turns it off), e.g. {name}=dict(weight=1.0)')
  if 'warmup_steps' in opts:
    checks.integer(opts['warmup_steps'], f'warmup_steps of loss term {name!r}', low=0,
                   high=checks.INT32_MAX, hint=' (0: no warm-up)')


def tiny_images(config: ml_collections.ConfigDict, **train_fields: Any) -> None:
  """The `:tiny` variant of an image config: 1000 training / 500 test images and 60 steps, which
  train in seconds on a CPU (the tests use it); validation only at the end."""
  config.dataset.update(train_limit=1000, test_limit=500)
  config.train.update({**dict(batch_size=50, num_epochs=0, num_steps=60, steps_per_call=10,
                              log_every=20, checkpoint_every=0), **train_fields})
  config.evals.val.every = 0


# A stacked autoencoder (aelab/stacked): its own fields; `stack()` adds the groups of its runs.
STACK = dict(
    layers=(200, 200),       # encoder widths: one pretraining stage each
    classes=10,              # the softmax head's classes
    freeze_encoder=False,    # fine-tune the head only (the pretrained encoder stays as it is)
    scratch=True,            # also train the same network from random weights (the baseline)
    eval_every=100,          # fine-tuning steps between accuracy evaluations (the curves)
    codes_in_memory_gib=1.0,  # a stage's training codes above this are written as .npy shards
)


def stack(pretrain: Mapping[str, Any], finetune: Mapping[str, Any],
          features: Mapping[str, Any] | None = None, **fields: Any) -> ml_collections.ConfigDict:
  """config.stack: STACK's fields, `pretrain` = the groups of every stage's autoencoder run
  (model, loss, optimizer, train[, input_noise]; the model's hidden widths are set per stage),
  `finetune` = the groups of the fine-tuning runs (optimizer, train[, loss]; the loss defaults to
  softmax_cross_entropy) and `features` those of the softmax on the frozen features (default:
  finetune's)."""
  cfg = _group(STACK, fields, 'stack')
  groups = {'pretrain': (pretrain, ('model', 'loss', 'optimizer', 'train', 'input_noise')),
            'finetune': (finetune, ('optimizer', 'train', 'loss')),
            'features': (features or finetune, ('optimizer', 'train', 'loss'))}
  for name, (given, valid) in groups.items():
    given = copy.deepcopy(dict(given))
    checks.fields(given, valid, f'stack.{name}')
    cfg[name] = ml_collections.ConfigDict(given)
  return cfg
