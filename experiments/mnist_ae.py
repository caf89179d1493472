"""Dense autoencoder 784-256-64-256-784 on MNIST: relu hidden layers, sigmoid output, bce, Adam.

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.run \
        --config=experiments/mnist_ae.py --workdir=workdirs/mnist_ae

Expected (the shared 10k training subset, 9k train / 1k val, 60 epochs, 2-core CPU): test BCE
per pixel 0.078 and test R^2 0.92 on the official 10k test set, in about 15 s. (The classic
Keras 784-32-784 tutorial reports about 0.10 on the full 60k training set.)
`:tiny` trains a 784-32-8-32-784 model on 1000 digits in seconds (used by the tests).
"""

from aelab import data, losses, models
from aelab.trainer import optim, train
from aelab.config import tiny_images, variants


def get_config(arg=None):
  import ml_collections
  v = variants(arg, ('tiny',))
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = data.defaults('mnist')
  config.preprocessing = 'none'
  config.model = models.defaults('dense', hidden=(256, 64), activation='relu',
                                 output_activation='sigmoid')
  config.loss = losses.defaults(reconstruction=dict(weight=1.0, kind='bce'))
  config.optimizer = optim.defaults(name='adam', learning_rate=1e-3)
  config.train = train.defaults(batch_size=128, num_epochs=60, log_every=70, eval_every=700,
                                checkpoint_every=700)
  if 'tiny' in v:
    tiny_images(config, checkpoint_every=30)
    config.model.hidden = (32, 8)
  return config
