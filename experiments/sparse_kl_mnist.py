"""Sparse autoencoder, UFLDL style: 784-196-784, sigmoid units, KL sparsity and weight decay.

    J = 1/m sum_i 0.5 ||x_hat_i - x_i||^2 + (lambda/2) sum W^2 + beta sum_j KL(rho || rho_hat_j)

with rho = 0.1, beta = 3, lambda = 3e-3 (the UFLDL MNIST exercise), rho_hat_j the mean activation
of hidden unit j over the batch. UFLDL minimises it full-batch with L-BFGS; here Adam on batches
of 500, so rho_hat is a 500-example mean. `:fashion` trains on the full Fashion-MNIST.

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.run \
        --config=experiments/sparse_kl_mnist.py --workdir=workdirs/sparse_kl_mnist
    python -m aelab.run --config=experiments/sparse_kl_mnist.py:fashion \
        --workdir=workdirs/sparse_kl_mnist_fashion

The reference sweep, `get_sweep`: kl_sparsity weight (beta) 0.3, 3, 30 x rho 0.01, 0.05, 0.1 x
seed 0, 1, 2 (27 points; `--list` prints them), each point a run in DIR/<name>/, then
DIR/results.md and DIR/plots/ (see docs/sweeps.md):

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.sweep \
        --config=experiments/sparse_kl_mnist.py --workdir=sweeps/sparse_kl --parallel=2 \
        --metric=test/code_mean

Expected figure: test `code_mean` (the mean activation of the 196 hidden units) within 20% of
rho = 0.1 (0.1065 on MNIST, 0.1069 on Fashion-MNIST), and `plots/filters.png` showing the classic pen-stroke filters (after ~60 epochs
they still look like whole digits; the strokes need the longer run).
`:tiny` runs 60 steps on 1000 digits (used by the tests).
"""

from mnist_ae import get_config as mnist_ae_config

from aelab.config import defaults, parse_arg
from aelab.config.sweeps import product, sweep

VARIANTS = dict(tiny=False, fashion=False)


def get_config(arg=None):
  v = parse_arg(arg, **VARIANTS)
  config = mnist_ae_config()
  if v.fashion:
    config.dataset = defaults.dataset('fashion_mnist')
  config.model.update(hidden=(196,), activation='sigmoid')
  config.loss = defaults.loss(
      reconstruction=dict(weight=0.5, kind='mse', reduction='sum'),
      kl_sparsity=dict(weight=3.0, rho=0.1, layer='code'),
      weight_decay=dict(weight=3e-3))
  config.optimizer.learning_rate = 3e-3
  # 400 epochs of the 9k MNIST subset (7200 steps); 40 of the 54k Fashion-MNIST (4320 steps).
  config.train.update(batch_size=500, num_epochs=40 if v.fashion else 400, log_every=100,
                      checkpoint_every=2000)
  config.evals.val.every = 1000
  if v.tiny:
    defaults.tiny_images(config, batch_size=100)
  return config


def get_sweep(arg=None):
  parse_arg(arg, **VARIANTS)  # the same variants as get_config; the sweep is the same for all
  return product(sweep('loss.kl_sparsity.weight', [0.3, 3.0, 30.0]),
                 sweep('loss.kl_sparsity.rho', [0.01, 0.05, 0.1]),
                 sweep('seed', [0, 1, 2]))
