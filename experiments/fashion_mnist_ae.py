"""Dense autoencoder 784-256-64-256-784 on the full Fashion-MNIST: relu, sigmoid output, bce, Adam.

    sudo apt-get install -y dataset-fashion-mnist   # or let aelab download it
    python -m aelab.run --config=experiments/fashion_mnist_ae.py --workdir=workdirs/fashion_ae

Expected (54k train / 6k val / 10k test, 20 epochs, 2-core CPU): test BCE per pixel about 0.27
(Fashion-MNIST's grey levels keep the BCE floor far above MNIST's) and test R^2 about 0.90.
`:tiny` trains a small model on 1000 images in seconds (used by the tests).
"""

from aelab import data, losses, models, optim, train


def get_config(arg=None):
  import ml_collections
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = data.defaults('fashion_mnist')
  config.preprocessing = 'none'
  config.model = models.defaults('dense', hidden=(256, 64), activation='relu',
                                 output_activation='sigmoid')
  config.loss = losses.defaults(reconstruction=dict(weight=1.0, kind='bce'))
  config.optimizer = optim.defaults(name='adam', learning_rate=1e-3)
  config.train = train.defaults(batch_size=256, num_epochs=20, log_every=100, eval_every=1000,
                                checkpoint_every=1000)
  if arg == 'tiny':
    config.dataset.train_limit = 1000
    config.dataset.test_limit = 500
    config.model.hidden = (32, 8)
    config.train.update(batch_size=50, num_epochs=0, num_steps=60, steps_per_call=10,
                        log_every=20, eval_every=0, checkpoint_every=30)
  elif arg not in (None, ''):
    raise ValueError(f'unknown variant {arg!r}; valid: tiny')
  return config
