"""Convolutional autoencoder: conv 16-32 (3x3, stride 2) -> dense 32 code -> dense + transposed
convs back to exactly the input shape (taken from the dataset: 28x28x1 here, any H x W x C works).

Sized for a CPU: XLA:CPU runs the convolution gradients ~5-7x slower inside the trainer's scanned
step than in a single jitted step (jax-ml/jax#12868), so widths 32-64 cost ~0.45 s a step there.
On a GPU/TPU widen it: --config.model.channels='(32, 64)'.

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.run \
        --config=experiments/conv_ae_mnist.py --workdir=workdirs/conv_ae_mnist
    python -m aelab.run --config=experiments/conv_ae_mnist.py:fashion \
        --workdir=workdirs/conv_ae_mnist_fashion

  :fashion   the full Fashion-MNIST

Expected figure: test BCE per pixel about 0.085 and R^2 0.89 on MNIST (0.278 and 0.87 on
Fashion-MNIST), from runs of about 1.5 minutes before the block was unrolled (scan_unroll=10
then measured 31.7 -> 149.4 steps/s here); plots/filters.png shows the 16 first-layer kernels.
`:tiny` runs 60 steps on 1000 digits (used by the tests).
"""

from mnist_ae import get_config as mnist_ae_config

from aelab.config import defaults, parse_arg


def get_config(arg=None):
  v = parse_arg(arg, tiny=False, fashion=False)
  config = mnist_ae_config()
  if v.fashion:
    config.dataset = defaults.dataset('fashion_mnist')
  config.model = defaults.model('conv', channels=(16, 32), kernel_size=3, latent=32,
                                activation='relu', output_activation='sigmoid')
  # 15 epochs of the 9k MNIST subset (2100 steps); 3 of the 54k Fashion-MNIST (2530 steps).
  config.train.update(batch_size=64, num_epochs=3 if v.fashion else 15, log_every=100,
                      checkpoint_every=1000,
                      scan_unroll=10)  # XLA:CPU convs in a rolled scan: 4.7x slower
  config.evals.val.every = 1000
  if v.tiny:
    defaults.tiny_images(config)
    config.model.update(channels=(8, 16), latent=16)
  return config
