"""Deterministic generative autoencoders on MNIST, sampled through a density of their codes:
WAE-MMD (Tolstikhin et al. 2018), RAE-L2 and RAE-GP (Ghosh et al. 2020) and the plain
autoencoder, each with ex-post density estimation (a 10-component Gaussian mixture fitted to the
training codes after training; aelab/models/density.py) for its samples.

All four: 784-200-200-[16] (tanh, a linear code) and its mirror with a sigmoid output, squared
error summed over the pixels (the papers' c(x, y) = |x - y|^2), Adam 1e-3, the grey-level digits
(no binarization: these models have no likelihood).

  model=wae     + 10 x mmd (inverse multiquadratic kernel, prior N(0, I), the WAE code's widths)
  model=rae_l2  + 1e-4 x code_l2 (0.5 |z|^2) + 1e-7 x decoder_weight_decay (pythae's defaults)
  model=rae_gp  + 1e-4 x code_l2 + 1e-7 x decoder_gradient (|grad_z sum D(z)|^2)
  model=ae      the reconstruction alone
  :fashion      the full Fashion-MNIST

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.run \
        --config=experiments/wae_rae_mnist.py:model=rae_l2 --workdir=workdirs/rae_l2

`:tiny` trains 60 steps on 1000 digits (used by the tests). `get_sweep`: the four models, each
its variant (the sweep's 'arg' axis):

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.sweep \
        --config=experiments/wae_rae_mnist.py --workdir=sweeps/wae_rae --parallel=2
"""

from mnist_ae import get_config as mnist_ae_config

from aelab.config import defaults, parse_arg
from aelab.config.sweeps import sweep

MODELS = ('wae', 'rae_l2', 'rae_gp', 'ae')
REGULARISERS = dict(
    wae=dict(mmd=dict(weight=10.0, kernel='imq', scale=1.0)),
    rae_l2=dict(code_l2=dict(weight=1e-4), decoder_weight_decay=dict(weight=1e-7)),
    rae_gp=dict(code_l2=dict(weight=1e-4), decoder_gradient=dict(weight=1e-7)),
    ae={},
)


VARIANTS = dict(tiny=False, model='wae', fashion=False)


def get_config(arg=None):
  v = parse_arg(arg, **VARIANTS)
  if v.model not in MODELS:
    from aelab.errors import AelabError  # jax-free
    raise AelabError(f'unknown variant model={v.model!r}; valid: {", ".join(MODELS)}')
  config = mnist_ae_config()
  if v.fashion:
    config.dataset = defaults.dataset('fashion_mnist')
  config.model = defaults.model('dense', hidden=(200, 200, 16), activation='tanh,tanh,linear',
                                output_activation='sigmoid')
  config.loss = defaults.loss(reconstruction=dict(weight=1.0, kind='mse', reduction='sum'),
                              **REGULARISERS[v.model])
  config.train.update(batch_size=100, num_epochs=20 if v.fashion else 150, log_every=200,
                      checkpoint_every=2000)
  config.evals.val.every = 2000
  if v.tiny:
    defaults.tiny_images(config)
    config.model.update(hidden=(64, 64, 8))
  return config


def get_sweep(arg=None):
  parse_arg(arg, **VARIANTS)
  return sweep('arg', [f'model={m}' for m in MODELS])
