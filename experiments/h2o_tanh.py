"""H2O's tanh autoencoder (hidden 25, 10) on the UCI breast-cancer table, every step exported.

    python -m aelab.run --config=experiments/h2o_tanh.py --workdir=workdirs/h2o_tanh
    python -m aelab.inspect weights --workdir=workdirs/h2o_tanh --out=h2o_weights.npz
    python -m aelab.inspect features --workdir=workdirs/h2o_tanh --layer=1 \
        --input=tests/data/breast_cancer.csv --out=h2o_layer1.csv

docs/by_hand.md ("Reproduce the features by hand") recomputes layers 1, 2 and the output of
this run with five lines of numpy from the exported weights.

Mirrors h2o.deeplearning(autoencoder=TRUE, activation="Tanh", hidden=c(25, 10)) where H2O states
its defaults (h2o-py/h2o/estimators/deeplearning.py; hex/deeplearning/DeepLearningTask.java):
  - topology: H2O's `hidden` lists every hidden layer, so its network is 30-25-10-30, the output
    layer right after the code: model.mirror=False, decoder=() (encoder_1, encoder_2, decoder_1);
  - input normalisation (x - mean) / (max - min), H2O's `standardize=TRUE` for autoencoders:
    preprocessing 'h2o' (a constant column gets mul 1 instead of being dropped, see below);
  - tanh on every layer including the output layer (makeNeurons gives the autoencoder's output
    layer the hidden activation), mse ("Quadratic", what loss="Automatic" means here);
  - epochs=10, mini_batch_size=1, adaptive_rate=TRUE: ADADELTA with rho=0.99, epsilon=1e-8
    (learning rate 1.0: ADADELTA's step needs none); l1 = l2 = 0, no dropout.
Not mirrored (aelab has no equivalent, or chose otherwise):
  - initial weights: H2O's "UniformAdaptive" (uniform +-sqrt(6 / (fan_in + fan_out))); flax's
    default is LeCun normal. Biases start at 0 in both;
  - H2O trains Hogwild! in parallel threads and stops early (stopping_rounds=5,
    overwrite_with_best_model=TRUE); aelab runs the 10 epochs serially and keeps the last step;
  - H2O drops constant columns (ignore_const_cols=TRUE); this table has none;
  - H2O trains on the whole frame; aelab holds out 20% test and 10% validation rows.

Expected (409 training rows, 4090 steps, a few seconds on a CPU): test R^2 0.882 in input units
(docs/inspect.md); the by-hand differences in the table of docs/by_hand.md.
`:tiny` trains 300 steps with batch 1 (used by the tests).
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
  config.preprocessing = 'h2o'
  config.model = defaults.model('dense', hidden=(25, 10), activation='tanh',
                                output_activation='tanh', mirror=False, decoder=())
  config.loss = defaults.loss(reconstruction=dict(weight=1.0, kind='mse'))
  config.optimizer = defaults.optimizer(name='adadelta', learning_rate=1.0, adadelta_rho=0.99,
                                        adadelta_eps=1e-8)
  config.train = defaults.train(batch_size=1, num_epochs=10, steps_per_call=100, log_every=100,
                                checkpoint_every=0)
  config.evals = defaults.evals(every=1000, batch_size=1000)
  if v.tiny:
    config.train.update(num_epochs=0, num_steps=300)
    config.evals.val.every = 0
  return config
