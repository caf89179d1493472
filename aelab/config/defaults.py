"""The defaults of every config group, in one jax-free place: plain tables and small builders.

    config.model = defaults.model('dense', hidden=(256, 64))
    config.loss = defaults.loss(reconstruction=dict(weight=1.0, kind='bce'))
    config.evals = defaults.evals(every=700)

Each builder returns a ConfigDict of the table's fields with the given ones replaced; an unknown
field is an error naming the valid ones. The modules that implement a group (aelab/models,
aelab/losses, aelab/corruption.py, aelab/trainer/optim.py) read their defaults from here.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Mapping
from typing import Any

import ml_collections

from aelab.config.fields import check_choice, check_fields
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
    frozen='',           # top-level parameters kept unchanged: 'encoder_1,encoder_2'
)

MODELS = {
    'dense': dict(
        hidden=(256, 64),            # encoder widths; the last is the code
        activation='relu',           # one name, or one per encoder layer: 'tanh,sigmoid'
        output_activation='sigmoid',
        tied=False,                  # decoder kernels are the encoder kernels transposed
                                     # (needs mirror=True)
        mirror=True,                 # the decoder mirrors the encoder (widths hidden[-2::-1],
                                     # activations likewise); decoder and decoder_activation
                                     # are then ignored
        decoder=(),                  # mirror=False: the decoder's hidden widths, code to output;
                                     # () puts the output layer right after the code
        decoder_activation='',       # mirror=False: one name, or one per decoder hidden layer;
                                     # '' = the encoder's activation (one name)
    ),
    'conv': dict(
        channels=(32, 64),           # encoder conv widths (stride 2 each); the decoder mirrors them
        kernel_size=3,
        latent=32,                   # width of the dense code
        activation='relu',           # conv / dense hidden layers
        code_activation='linear',    # the code layer
        output_activation='sigmoid',
    ),
    'vae': dict(
        body='dense',
        hidden=(200, 200),       # dense body: encoder widths; the decoder mirrors them
        channels=(32, 64),       # conv body: encoder conv widths (stride 2 each)
        kernel_size=3,           # conv body
        latent=50,               # width of z
        activation='tanh',
        likelihood='bernoulli',  # 'bernoulli' (logits; data in [0, 1]) or 'gaussian' (learned
                                 # scalar std)
    ),
    'sae': dict(                     # a sparse dictionary on activations (aelab/models/sae.py)
        latents=4096,                # dictionary width n
        activation='topk',           # relu (+ sae_l1 term), topk, batchtopk, jumprelu (+ sae_l0)
        k=32,                        # topk / batchtopk: active latents per example
        normalize_decoder=True,      # unit-norm decoder rows (gradient along them removed)
        b_dec_init='median',         # zeros, mean or median (geometric) of the training rows
        top_k='exact',               # exact (jax.lax.top_k) or approx (jax.lax.approx_max_k)
        jumprelu_threshold=0.001,    # jumprelu: the thresholds' initial value
        bandwidth=0.001,             # jumprelu: the straight-through estimator's kernel width
        dead_steps=1000,             # a latent silent this many train steps is dead (AuxK, stats)
        threshold_decay=0.99,        # batchtopk: moving average of the inference threshold
    ),
    'classifier': dict(
        hidden=(256, 64),            # encoder widths (the dense model's encoder_1..K); () is
                                     # softmax regression on the input
        activation='relu',           # one name, or one per encoder layer: 'tanh,sigmoid'
        classes=10,                  # width of the softmax head
    ),
}

# Each loss term's own options and their defaults (aelab/losses/terms.py; the same as the term
# function's keyword defaults, which a test checks). Every term also takes LOSS_COMMON.
LOSS_TERMS = {
    'reconstruction': dict(kind='mse', reduction='mean'),
    'l1_activity': dict(layer='code'),
    'kl_sparsity': dict(rho=0.05, layer='code'),
    'weight_decay': dict(),
    'vae_kl': dict(),
    'contractive': dict(method='exact'),
    'softmax_cross_entropy': dict(),
    'normalized_mse': dict(),        # sae: ||x - x_hat||^2 / ||x - batch mean||^2
    'sae_l1': dict(),                # sae: sum_j |f_j| ||W_dec_j||
    'sae_l0': dict(),                # sae (jumprelu): active latents, STE gradient to thresholds
    'auxk': dict(k=512),             # sae: the top k dead latents reconstruct the residual
}
LOSS_COMMON = ('weight', 'warmup_steps')  # the weight, and its linear warm-up from step 0

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

# Evaluators by type. `every`: N > 0 runs one every N train steps and at the end; 0 only at the
# end; -1 never.
EVALUATORS = {
    'reconstruction': dict(split='val', every=0, batch_size=1000),
    'plots': dict(split='test', every=0),
    'pca': dict(split='test', every=0, components=32),  # the linear baseline at a code size
    'iwae': dict(
        split='test', every=0,
        samples=5000,     # k (5000 in the literature)
        batch_size=100,   # examples per jitted call
        memory_mb=256,    # budget for one chunk of samples' activations; sets the chunk size over k
        examples=0,       # evaluate the first N examples of the split; 0 = all of it
    ),
    'classification': dict(split='val', every=0, batch_size=1000),  # accuracy, confusion matrix
    'sae': dict(split='test', every=0, batch_size=1000),  # L0, variance explained, dead/dense
                                                          # latents, ground-truth recovery
    'downstream': dict(split='test', every=0, batch_size=1000),  # a run's metric, layer spliced
}


def _group(table: Mapping[str, Any], given: Mapping[str, Any], where: str,
           **head: Any) -> ml_collections.ConfigDict:
  check_fields(given, table, where)
  return ml_collections.ConfigDict({**head, **table, **given})


def train(**fields: Any) -> ml_collections.ConfigDict:
  """config.train: batch size, steps, logging and checkpoint cadence, device options."""
  return _group(TRAIN, fields, 'train')


def optimizer(**fields: Any) -> ml_collections.ConfigDict:
  """config.optimizer: name, learning rate and schedule, and the optimizer's own options."""
  return _group(OPTIMIZER, fields, 'optimizer')


def model(name: str, **fields: Any) -> ml_collections.ConfigDict:
  """config.model: `name` (dense, conv, vae, classifier) and that model's fields."""
  check_choice(name, tuple(MODELS), 'model')
  return _group(MODELS[name], fields, f'model {name!r}', name=name)


def input_noise(**fields: Any) -> ml_collections.ConfigDict:
  """config.input_noise: binarization and corruption of the model's inputs (aelab/corruption.py)."""
  return _group(INPUT_NOISE, fields, 'input_noise')


def dataset(name: str) -> ml_collections.ConfigDict:
  """config.dataset: `name` and that source's fields (aelab.data.defaults)."""
  from aelab import data  # Local: aelab.data's modules import aelab.config.
  return data.defaults(name)


def evaluator(type: str,  # pylint: disable=redefined-builtin
              **fields: Any) -> ml_collections.ConfigDict:
  """One entry of config.evals: ConfigDict(type=..., every=..., split=..., <type's fields>)."""
  check_choice(type, tuple(EVALUATORS), 'evaluator type')
  return _group(EVALUATORS[type], fields, f'evaluator {type!r}', type=type)


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
    _check_term(name, opts)
    cfg[name] = ml_collections.ConfigDict(
        {'weight': float(opts.pop('weight')), **LOSS_TERMS[name], **opts})
  return cfg


def _check_term(name: str, opts: Mapping[str, Any]) -> None:
  if name not in LOSS_TERMS:
    raise AelabError(f'unknown loss term {name!r}; valid terms: {", ".join(LOSS_TERMS)}')
  unknown = sorted(set(opts) - set(LOSS_TERMS[name]) - set(LOSS_COMMON))
  if unknown:
    raise AelabError(f'unknown option {", ".join(map(repr, unknown))} of loss term {name!r}; '
                     f'valid options: {", ".join([*LOSS_COMMON, *LOSS_TERMS[name]])}')
  weight = opts.get('weight')
  if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
    raise AelabError(f'loss term {name!r} needs a number as its weight, e.g. '
                     f'{name}=dict(weight=1.0) (0 turns it off); got {weight!r}')


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
    check_fields(given, valid, f'stack.{name}')
    cfg[name] = ml_collections.ConfigDict(given)
  return cfg
