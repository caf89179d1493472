"""Sparse dictionaries on toy activations with ground truth (dataset `toy_features`): 512 true
features, random unit directions in 128 dimensions, each active with probability 0.01 (about 5
per example), magnitudes U(0.5, 1.5); a dictionary of 512 latents. The `sae` evaluator scores
how many true features some decoder row matches (cosine > 0.9), the mean best cosine, L0, the
variance explained and the dead and dense latents (aelab/evaluators/sae.py).

    python -m aelab.run --config=experiments/sae_toy.py:topk --workdir=workdirs/sae_toy_topk

Variants (one activation each, sparsity set for comparable L0 near the true 5):
`:topk` (default; Gao et al. 2024: k = 6, AuxK on the residual with weight 1/32),
`:batchtopk` (k x B over the batch; inference threshold from training), `:jumprelu`
(learned thresholds, L0 penalty), `:l1` (ReLU, L1 weighted by decoder norms, free decoder norms),
`:matryoshka` (BatchTopK, k = 6, whose prefixes of n/16, n/8, n/4, n/2 and n latents each
reconstruct alone, `matryoshka_mse`, with AuxK; Bussmann et al. 2025's nesting), `:gated` (a gate
and a magnitude path sharing W_enc, unit-norm decoder, `gated_l1` on the gate plus `gated_aux`
through the frozen decoder; Rajamanoharan et al. 2024); `:tiny` in seconds (the tests).
BatchTopK's k may be fractional where k x batch_size is whole (`--config.model.k=5.5`). Any NPZ
of activations instead of the toy: `--config.dataset.name=npz --config.dataset.path=acts.npz`
(the `sae` evaluator then leaves out the ground-truth scores). AuxK off:
`--config.loss.auxk.weight=0`.

The reference sweep, `get_sweep`: the sparsity knob of the variant (k, or the penalty weight)
over four values, each a point of the L0 vs variance-explained frontier (docs/sae.md).
"""

import ml_collections

from aelab.config import defaults, parse_arg
from aelab.config.sweeps import sweep

KINDS = ('topk', 'batchtopk', 'jumprelu', 'l1', 'matryoshka', 'gated')
VARIANTS = dict(**{k: False for k in KINDS}, tiny=False)
# Each kind's sparsity knob: the field, its default here, the four values of the sweep.
KNOBS = {'topk': ('model.k', 6, [3, 6, 12, 24]), 'batchtopk': ('model.k', 6, [3, 6, 12, 24]),
         'jumprelu': ('loss.sae_l0.weight', 0.005, [0.02, 0.01, 0.005, 0.002]),
         'l1': ('loss.sae_l1.weight', 0.1, [0.3, 0.1, 0.03, 0.01]),
         'matryoshka': ('model.k', 6, [3, 6, 12, 24]),
         'gated': ('loss.gated_l1.weight', 0.2, [0.4, 0.2, 0.1, 0.05])}
ACTIVATION = {'l1': 'relu', 'matryoshka': 'batchtopk'}  # the rest: the kind's own name


def kind_of(v) -> str:
  """The variant's dictionary kind (topk when none is named)."""
  chosen = [k for k in KINDS if v[k]]
  if len(chosen) > 1:
    from aelab.errors import AelabError
    raise AelabError(f'choose one of the variants {", ".join(KINDS)}; got {chosen}')
  return chosen[0] if chosen else 'topk'


def nested(latents: int) -> tuple[int, ...]:
  """Matryoshka prefix sizes n/16, n/8, n/4, n/2, n: Bussmann et al.'s groups n/16, n/16, n/8,
  n/4, n/2, cumulated."""
  return tuple(latents >> s for s in (4, 3, 2, 1, 0))


def dictionary(kind: str, sparsity, latents: int, dead_steps: int, auxk_k: int,
               threshold: float) -> tuple[ml_collections.ConfigDict, ml_collections.ConfigDict]:
  """(config.model, config.loss) of a dictionary of `kind` at `sparsity` (k, or the weight of its
  penalty): TopK, BatchTopK and Matryoshka BatchTopK with AuxK (weight 1/32, as Gao et al. and
  Bussmann et al.), JumpReLU with the L0 penalty (thresholds starting at `threshold`, the
  estimator 0.05 wide), L1 with free decoder norms, gated with its L1 and auxiliary terms (weight
  1, the paper's) and a unit-norm decoder; every kind with normalized MSE but Matryoshka, whose
  matryoshka_mse holds it (its last prefix is the whole dictionary). model.k is an int field for
  TopK (whole by definition), a float one for the BatchTopK kinds, whose k is a mean
  (`--config.model.k=5.5` where k x batch_size is whole)."""
  k = {'topk': {'k': int(sparsity)}, 'batchtopk': {'k': float(sparsity)}}.get(
      ACTIVATION.get(kind, kind), {})
  model = defaults.model('sae', latents=latents, dead_steps=dead_steps, **k,
                         activation=ACTIVATION.get(kind, kind), normalize_decoder=kind != 'l1')
  terms = {'normalized_mse': dict(weight=1.0)}
  if k:
    terms['auxk'] = dict(weight=1 / 32, k=auxk_k)
  if kind == 'matryoshka':
    model.matryoshka_widths = nested(latents)
    terms = {'matryoshka_mse': dict(weight=1.0), 'auxk': terms['auxk']}
  elif kind == 'jumprelu':
    terms['sae_l0'] = dict(weight=sparsity)
    model.update(jumprelu_threshold=threshold, bandwidth=0.05)
  elif kind == 'l1':
    terms['sae_l1'] = dict(weight=sparsity)
  elif kind == 'gated':
    terms.update(gated_l1=dict(weight=sparsity), gated_aux=dict(weight=1.0))
  return model, defaults.loss(**terms)


def sae_config(dataset: ml_collections.ConfigDict, kind: str, sparsity, *, latents: int,
               dead_steps: int, auxk_k: int, threshold: float, epochs: int, eval_every: int,
               tiny: bool) -> ml_collections.ConfigDict:
  """A dictionary of `kind` (see `dictionary`) on `dataset`, Adam 1e-3 on batches of 256 for
  `epochs`, the `sae` evaluator on test; `tiny`: 128 latents, 60 steps (the tests)."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = dataset
  config.preprocessing = 'none'
  config.model, config.loss = dictionary(kind, sparsity, latents=latents, dead_steps=dead_steps,
                                         auxk_k=auxk_k, threshold=threshold)
  config.optimizer = defaults.optimizer(name='adam', learning_rate=1e-3)
  config.train = defaults.train(batch_size=256, num_epochs=epochs, log_every=100,
                                checkpoint_every=1000, steps_per_call=20)
  config.evals = defaults.evals(every=eval_every)
  config.evals.sae = defaults.evaluator('sae', split='test')
  if tiny:
    config.model.update(latents=128, dead_steps=20)
    if config.model.matryoshka_widths:
      config.model.matryoshka_widths = nested(128)
    if 'auxk' in config.loss:
      config.loss.auxk.k = 32
    config.train.update(num_epochs=0, num_steps=60, checkpoint_every=30, log_every=10,
                        steps_per_call=10, batch_size=100, progress=False)
  return config


def get_config(arg=None):
  v = parse_arg(arg, **VARIANTS)
  kind = kind_of(v)
  # JumpReLU's thresholds start on the scale of these pre-activations (about 1).
  config = sae_config(defaults.dataset('toy_features'), kind, KNOBS[kind][1], latents=512,
                      dead_steps=250, auxk_k=128, threshold=0.1, epochs=30, eval_every=1000,
                      tiny=v.tiny)
  if v.tiny:
    config.dataset.update(num_examples=4000, num_features=64, dims=32)
    config.evals.val.every = 30
  return config


def get_sweep(arg=None):
  field, _, values = KNOBS[kind_of(parse_arg(arg, **VARIANTS))]
  return sweep(field, values)
