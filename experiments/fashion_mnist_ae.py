"""Dense autoencoder 784-256-64-256-784 on the full Fashion-MNIST: mnist_ae.py on other data.

    sudo apt-get install -y dataset-fashion-mnist   # or let aelab download it
    python -m aelab.run --config=experiments/fashion_mnist_ae.py --workdir=workdirs/fashion_ae

Expected (54k train / 6k val / 10k test, 20 epochs at batch 256, 2-core CPU, about a minute):
test BCE per pixel 0.270 (Fashion-MNIST's grey levels keep the BCE floor far above MNIST's) and
test R^2 0.90. `:tiny` trains a small model on 1000 images in seconds (used by the tests).
"""

from mnist_ae import get_config as mnist_ae_config

from aelab.config import defaults, parse_arg


def get_config(arg=None):
  v = parse_arg(arg, tiny=False)
  config = mnist_ae_config(arg)
  limits = {k: config.dataset[k] for k in ('train_limit', 'test_limit')}  # :tiny's, if any
  config.dataset = defaults.dataset('fashion_mnist')
  config.dataset.update(limits)
  if not v.tiny:
    config.train.update(batch_size=256, num_epochs=20, log_every=100, checkpoint_every=1000)
    config.evals.val.every = 1000
  return config
