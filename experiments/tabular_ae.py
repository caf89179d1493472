"""Dense autoencoder on a CSV table: standardized inputs, tanh 16-4 code, linear output, mse.

    python -m aelab.run --config=experiments/tabular_ae.py --workdir=workdirs/tabular_ae \
        [--config.dataset.path=my.csv --config.dataset.label_column=my_label]

The default table is the UCI breast-cancer data shipped in tests/data (569 x 30, label
`diagnosis`, not used as an input). Expected: test R^2 about 0.9 in a few seconds on a CPU.
`:tiny` runs 40 steps (used by the tests).
"""

import pathlib

from aelab import data, losses, models
from aelab.trainer import optim, train
from aelab.config import variants

TABLE = pathlib.Path(__file__).resolve().parents[1] / 'tests' / 'data' / 'breast_cancer.csv'


def get_config(arg=None):
  import ml_collections
  v = variants(arg, ('tiny',))
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = data.defaults('csv')
  config.dataset.path = str(TABLE)
  config.dataset.label_column = 'diagnosis'
  config.preprocessing = 'standardize'
  config.model = models.defaults('dense', hidden=(16, 4), activation='tanh',
                                 output_activation='linear')
  config.loss = losses.defaults(reconstruction=dict(weight=1.0, kind='mse'))
  config.optimizer = optim.defaults(name='adam', learning_rate=3e-3)
  config.train = train.defaults(batch_size=32, num_epochs=200, log_every=100, eval_every=500,
                                checkpoint_every=1000, eval_batch_size=256)
  if 'tiny' in v:
    config.train.update(num_epochs=0, num_steps=40, log_every=20, checkpoint_every=0)
  return config
