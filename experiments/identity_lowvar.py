"""'My autoencoder won't learn the identity': 84 features ~ N(1.1090579, 0.0012380764).

    python -m aelab.run --config=experiments/identity_lowvar.py:raw --workdir=workdirs/lowvar_raw
    python -m aelab.run --config=experiments/identity_lowvar.py:normalized --workdir=workdirs/lowvar_norm

The network is linear, 84 -> 84 -> 84 (dense hidden=(84,), activation and output 'linear': the
dense model always has a decoder, so the "single linear layer" is the product of two, which can
express exactly the same maps). Both variants train the same network with the same optimizer
and steps; only the preprocessing differs:

  raw          preprocessing 'none': the network sees 1.109 +- 0.001. Predicting the mean already
               gives MSE 1.5e-6, and the gradient of the variation is ~1e-3 of that of the mean,
               so the loss looks tiny while the reconstruction carries none of the variation
               (test r2 near 0);
  normalized   preprocessing 'per_sample': each row centred by its own mean and divided by its own
               std, inverted at the output. The identity is easy (test r2 near 1).

The reconstruction evaluator reports `r2` (the fraction of the variation reconstructed) next to
`mse`; docs/identity.md has the table. `:raw,tiny` and `:normalized,tiny` run in seconds (used by the tests).
"""

import ml_collections

from aelab.config import defaults, parse_arg
from aelab.errors import AelabError


def get_config(arg=None):
  v = parse_arg(arg, raw=False, normalized=False, tiny=False)
  if v.raw and v.normalized:
    raise AelabError(f'variants {arg!r}: choose raw or normalized (the default), not both; '
                     'optionally with ",tiny" (e.g. raw,tiny)')
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = defaults.dataset('lowvar')
  config.preprocessing = 'none' if v.raw else 'per_sample'
  config.model = defaults.model('dense', hidden=(84,), activation='linear',
                                output_activation='linear')
  config.loss = defaults.loss(reconstruction=dict(weight=1.0, kind='mse'))
  config.optimizer = defaults.optimizer(name='adam', learning_rate=1e-3)
  config.train = defaults.train(batch_size=100, num_epochs=20, steps_per_call=40, log_every=80,
                                checkpoint_every=0)
  config.evals = defaults.evals(every=400, batch_size=1000)
  if v.tiny:
    config.dataset.num_examples = 2000
    config.train.update(num_epochs=0, num_steps=400)
    config.evals.val.every = 0
  return config
