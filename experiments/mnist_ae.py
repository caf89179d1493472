"""Dense autoencoder 784-256-64-256-784 on MNIST: relu hidden layers, sigmoid output, bce, Adam.

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.run \
        --config=experiments/mnist_ae.py --workdir=workdirs/mnist_ae

Expected (the shared 10k training subset, 9k train / 1k val, 60 epochs, 2-core CPU): test BCE
per pixel 0.078 and test R^2 0.92 on the official 10k test set, in about 15 s. (The classic
Keras 784-32-784 tutorial reports about 0.10 on the full 60k training set.)
`:tiny` trains a 784-32-8-32-784 model on 1000 digits in seconds (used by the tests). `:pca`
adds the PCA baseline (evaluator `pca`: PCA fitted on the training split with as many components
as the code is wide, reconstructing the test split) beside the autoencoder's own test metrics.

The reference sweep, `get_sweep`: the code size, `model.hidden` = (256, c) for c in 2, 8, 32,
128; with `:pca` zipped with `evals.pca.components` = c, so DIR/results.md has test/pca_mse beside
test/mse at each code size (see docs/sweeps.md):

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.sweep \
        --config=experiments/mnist_ae.py:pca --workdir=sweeps/code_size --parallel=2 \
        --metric=test/mse,test/pca_mse
"""

import ml_collections

from aelab.config import defaults, parse_arg
from aelab.config.sweeps import sweep, zipit

VARIANTS = dict(tiny=False, pca=False)
CODES = (2, 8, 32, 128)


def get_config(arg=None):
  v = parse_arg(arg, **VARIANTS)
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = defaults.dataset('mnist')
  config.preprocessing = 'none'
  config.model = defaults.model('dense', hidden=(256, 64), activation='relu',
                                output_activation='sigmoid')
  config.loss = defaults.loss(reconstruction=dict(weight=1.0, kind='bce'))
  config.optimizer = defaults.optimizer(name='adam', learning_rate=1e-3)
  config.train = defaults.train(batch_size=128, num_epochs=60, log_every=70, checkpoint_every=700)
  config.evals = defaults.evals(every=700)
  if v.tiny:
    defaults.tiny_images(config, checkpoint_every=30)
    config.model.hidden = (32, 8)
  if v.pca:
    config.evals.pca = defaults.evaluator('pca', components=config.model.hidden[-1])
  return config


def get_sweep(arg=None):
  v = parse_arg(arg, **VARIANTS)
  hidden = sweep('model.hidden', [(256, c) for c in CODES])
  return zipit(hidden, sweep('evals.pca.components', list(CODES))) if v.pca else hidden
