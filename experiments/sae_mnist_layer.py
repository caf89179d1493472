"""Sparse dictionaries on a trained MNIST model's hidden layer: the 256 ReLU units of the first
hidden layer of experiments/mnist_ae.py (784-256-64-256-784), a dictionary of 1024 latents (4x the
width). Train that autoencoder first, then the dictionary on its layer-1 activations (dataset
`activations`: the autoencoder's own train / val / test splits, through its own preprocessing):

    export AELAB_DATA_DIR=../shared/data/mnist
    python -m aelab.run --config=experiments/mnist_ae.py --workdir=workdirs/mnist_ae
    python -m aelab.run --config=experiments/sae_mnist_layer.py:topk --workdir=workdirs/sae_topk

Another run or layer: `--config.dataset.run=DIR --config.dataset.layer=2` (set model.latents to
suit its width). Evaluated at the end: reconstruction on val and test, `sae` on test (L0, variance
explained, dead / dense latents) and `downstream` on test (the autoencoder's own test MSE with
layer 1 replaced by the dictionary's reconstruction: the fraction recovered between the original
and the zero-ablated layer; aelab/evaluators/downstream.py).

Variants (one activation each; the default sparsity gives an L0 near 20 on this layer):
`:topk` (default; k = 20, AuxK with weight 1/32), `:batchtopk` (k = 20 x B over the batch; the
inference threshold from training), `:jumprelu` (learned thresholds starting at 0.5, L0 penalty
weight 0.0025), `:l1` (ReLU, L1 weighted by decoder norms with weight 0.02, free decoder norms),
`:matryoshka` (BatchTopK k = 20 whose prefixes of 64, 128, 256, 512 and 1024 latents each
reconstruct alone, with AuxK; measured L0 20.8, variance explained 0.911, fraction recovered
0.943), `:gated` (gate and magnitude paths, `gated_l1` weight 0.025, `gated_aux` 1, unit-norm
decoder; L0 20.1, 0.891, 0.918); `:tiny` in seconds on whatever run dataset.run names (k = 8, 128
latents, 60 steps; the tests use a tiny mnist_ae run). 60 epochs of the 9k training rows (2100
steps of 256): 9-22 s a run on a 2-core CPU (the run's wall_time_s).

The reference sweep, `get_sweep`: the variant's sparsity knob (k, or the penalty weight) over four
values, each a point of the L0 vs variance-explained frontier (python -m aelab.analysis.frontier;
the measured frontier and fractions recovered: docs/sae_mnist.md):

    python -m aelab.sweep --config=experiments/sae_mnist_layer.py:jumprelu \
        --workdir=workdirs/sae_mnist/jumprelu --parallel=1
"""

from sae_toy import VARIANTS, kind_of, sae_config

from aelab.config import defaults, parse_arg
from aelab.config.sweeps import sweep

# Each kind's sparsity knob: the field, its default here, the four values of the sweep.
KNOBS = {'topk': ('model.k', 20, [5, 10, 20, 40]),
         'batchtopk': ('model.k', 20, [5, 10, 20, 40]),
         'jumprelu': ('loss.sae_l0.weight', 0.0025, [0.01, 0.0025, 0.001, 0.0004]),
         'l1': ('loss.sae_l1.weight', 0.02, [0.04, 0.02, 0.01, 0.005]),
         'matryoshka': ('model.k', 20, [5, 10, 20, 40]),
         'gated': ('loss.gated_l1.weight', 0.025, [0.08, 0.04, 0.02, 0.01])}


def get_config(arg=None):
  v = parse_arg(arg, **VARIANTS)
  kind = kind_of(v)
  dataset = defaults.dataset('activations')
  dataset.update(run='workdirs/mnist_ae', layer='1')
  # JumpReLU's thresholds start on the scale of these pre-activations (99th percentile about 1):
  # Adam moves log(theta) by at most about the learning rate a step, so from 0.1 they could not
  # rise far enough in 2100 steps (L0 stayed near 28 for every weight from 0.01 to 0.08).
  config = sae_config(dataset, kind, KNOBS[kind][1], latents=1024, dead_steps=500, auxk_k=256,
                      threshold=0.5, epochs=60, eval_every=0, tiny=v.tiny)
  config.evals.downstream = defaults.evaluator('downstream', split='test')
  if v.tiny:
    config.model.k = 8
  return config


def get_sweep(arg=None):
  field, _, values = KNOBS[kind_of(parse_arg(arg, **VARIANTS))]
  return sweep(field, values)
