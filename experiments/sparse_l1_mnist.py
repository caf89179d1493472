"""Sparse autoencoder, Keras style: 784-32 relu code with an L1 activity penalty, sigmoid output.

The penalty is Keras' `activity_regularizer=l1(1e-5)`: 1e-5 * sum_j |h_j| averaged over the
batch (the `l1_activity` loss term), added to the per-pixel binary cross-entropy. `:plain` is the
same model without the penalty, for the comparison; `:fashion` trains on the full Fashion-MNIST.

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.run \
        --config=experiments/sparse_l1_mnist.py --workdir=workdirs/sparse_l1_mnist
    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.run \
        --config=experiments/sparse_l1_mnist.py:plain --workdir=workdirs/sparse_l1_mnist_plain
    python -m aelab.run --config=experiments/sparse_l1_mnist.py:fashion \
        --workdir=workdirs/sparse_l1_mnist_fashion

Expected figure: the test `code_mean` (mean activation of the code) of the penalised model below
the unpenalised one's at about the same BCE: 4.65 vs 5.89 on MNIST (2.15 vs 2.55 on
Fashion-MNIST), 2.22 with weight 1e-4 (the Keras blog's code has l1(10e-5) = 1e-4; the tutorial
reports 3.33 vs 7.30 after 100 epochs on the full 60k). `plots/filters.png`: the 32 filters.
`:tiny` runs 60 steps on 1000 digits (used by the tests).
"""

from mnist_ae import get_config as mnist_ae_config

from aelab.config import defaults, parse_arg


def get_config(arg=None):
  v = parse_arg(arg, tiny=False, plain=False, fashion=False)
  config = mnist_ae_config()
  if v.fashion:
    config.dataset = defaults.dataset('fashion_mnist')
  config.model.hidden = (32,)
  config.loss.update(defaults.loss(l1_activity=dict(weight=0.0 if v.plain else 1e-5, layer='code')))
  # 100 epochs of the 9k MNIST subset (3500 steps); 20 of the 54k Fashion-MNIST (4200 steps).
  config.train.update(batch_size=256, num_epochs=20 if v.fashion else 100, log_every=100,
                      checkpoint_every=1000)
  config.evals.val.every = 1000
  if v.tiny:
    defaults.tiny_images(config)
  return config
