"""Dense autoencoder 784-256-64-256-784 on the full Fashion-MNIST: mnist_ae.py on other data.

    sudo apt-get install -y dataset-fashion-mnist   # or let aelab download it
    python -m aelab.run --config=experiments/fashion_mnist_ae.py --workdir=workdirs/fashion_ae

Expected (54k train / 6k val / 10k test, 20 epochs at batch 256, 2-core CPU, about a minute):
test BCE per pixel 0.270 (Fashion-MNIST's grey levels keep the BCE floor far above MNIST's) and
test R^2 0.90. `:tiny` trains a small model on 1000 images in seconds (used by the tests).
"""

import pathlib

from aelab import config as config_lib, data


def get_config(arg=None):
  config = config_lib.load(f'{pathlib.Path(__file__).with_name("mnist_ae.py")}:{arg or ""}')
  limits = {k: config.dataset[k] for k in ('train_limit', 'test_limit')}  # :tiny's, if any
  config.dataset = data.defaults('fashion_mnist')
  config.dataset.update(limits)
  if 'tiny' not in config_lib.variants(arg, ('tiny',)):
    config.train.update(batch_size=256, num_epochs=20, log_every=100, eval_every=1000,
                        checkpoint_every=1000)
  return config
