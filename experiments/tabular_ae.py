"""Dense autoencoder on a CSV table: standardized inputs, tanh 16-4 code, linear output, mse.

    python -m aelab.run --config=experiments/tabular_ae.py --workdir=workdirs/tabular_ae \
        [--config.dataset.path=my.csv --config.dataset.label_column=my_label]

The default table is the UCI breast-cancer data shipped in tests/data (569 x 30, label
`diagnosis`, not used as an input). Expected: test R^2 about 0.9 in a few seconds on a CPU.
`:tiny` runs 40 steps (used by the tests).
"""

import pathlib

import ml_collections

from aelab.config import defaults, parse_arg

TABLE = pathlib.Path(__file__).resolve().parents[1] / 'tests' / 'data' / 'breast_cancer.csv'


def get_config(arg=None):
  v = parse_arg(arg, tiny=False)
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = defaults.dataset('csv')
  config.dataset.path = str(TABLE)
  config.dataset.label_column = 'diagnosis'
  config.preprocessing = 'standardize'
  config.model = defaults.model('dense', hidden=(16, 4), activation='tanh',
                                output_activation='linear')
  config.loss = defaults.loss(reconstruction=dict(weight=1.0, kind='mse'))
  config.optimizer = defaults.optimizer(name='adam', learning_rate=3e-3)
  config.train = defaults.train(batch_size=32, num_epochs=200, log_every=100,
                                checkpoint_every=1000)
  config.evals = defaults.evals(every=500, batch_size=256)
  if v.tiny:
    config.train.update(num_epochs=0, num_steps=40, log_every=20, checkpoint_every=0)
  return config
