"""Denoising autoencoder: 784-256-64-256-784 relu, sigmoid output, bce; corrupted inputs in,
clean targets out.

Corruption (config.input_noise, applied inside the jitted step, fresh noise every step):
  default            additive Gaussian, std 0.5 (the Keras tutorial's noise factor), clipped
                     to [0, 1]
  :masking           masking noise, 25% of the pixels set to 0
  :salt_and_pepper   20% of the pixels set to 0 or 1 (half each)
  :plain             the same corruption configured but not applied in training: a plain AE,
                     evaluated on the same corrupted test inputs (the baseline)
  :fashion           the full Fashion-MNIST
Combine with commas, e.g. `:masking,plain`.

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.run \
        --config=experiments/denoising_mnist.py --workdir=workdirs/denoising_mnist
    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.run \
        --config=experiments/denoising_mnist.py:plain --workdir=workdirs/denoising_mnist_plain
    python -m aelab.run --config=experiments/denoising_mnist.py:fashion \
        --workdir=workdirs/denoising_mnist_fashion

The reference sweep, `get_sweep`: the noise level of each corruption kind (12 points), each
level on its kind's own scale: gaussian a std (0.1, 0.3, 0.5, 0.8, clipped to [0, 1]), masking
and salt and pepper a fraction of the pixels in [0, 1] (masking 0.1, 0.25, 0.5, 0.75; salt and
pepper 0.05, 0.1, 0.2, 0.4). With `:plain` the same sweep gives the plain-AE baseline on the
same corrupted test inputs (see docs/sweeps.md):

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.sweep \
        --config=experiments/denoising_mnist.py --workdir=sweeps/denoising --parallel=2 \
        --metric=test/noisy_mse

Expected figure: test `noisy_mse` / `noisy_bce` (reconstruction of corrupted test digits against
the clean ones; both runs see the same corrupted digits) clearly lower for the denoiser than for
the plain AE: MSE 0.018 vs 0.073 (Gaussian), 0.010 vs 0.021 (masking), 0.013 vs 0.041 (salt and
pepper), 0.017 vs 0.058 on Fashion-MNIST; `plots/reconstructions.png` shows clean / corrupted /
denoised rows.
`:tiny` runs 60 steps on 1000 digits (used by the tests).
"""

from mnist_ae import get_config as mnist_ae_config

from aelab.config import defaults, parse_arg
from aelab.config.sweeps import chain, product, sweep

NOISE = {'masking': dict(corruption='masking', level=0.25),
         'salt_and_pepper': dict(corruption='salt_and_pepper', level=0.2),
         'gaussian': dict(corruption='gaussian', level=0.5, clip=True)}
VARIANTS = dict(tiny=False, plain=False, masking=False, salt_and_pepper=False, fashion=False)
# Levels per kind: a std for gaussian noise, a fraction of the pixels in [0, 1] for the others.
LEVELS = {'gaussian': [0.1, 0.3, 0.5, 0.8], 'masking': [0.1, 0.25, 0.5, 0.75],
          'salt_and_pepper': [0.05, 0.1, 0.2, 0.4]}


def get_config(arg=None):
  v = parse_arg(arg, **VARIANTS)
  config = mnist_ae_config()
  if v.fashion:
    config.dataset = defaults.dataset('fashion_mnist')
  kind = 'masking' if v.masking else 'salt_and_pepper' if v.salt_and_pepper else 'gaussian'
  config.input_noise = defaults.input_noise(**NOISE[kind], train=not v.plain)
  config.train.update(num_epochs=8 if v.fashion else 40, log_every=100, checkpoint_every=1000)
  config.evals.val.every = 1000
  if v.tiny:
    defaults.tiny_images(config)
    config.model.hidden = (64, 16)
  return config


def get_sweep(arg=None):
  parse_arg(arg, **VARIANTS)  # the same variants as get_config (the kind's variant is swept)
  return chain(*(product(sweep('input_noise.corruption', [kind]),
                         sweep('input_noise.level', levels)) for kind, levels in LEVELS.items()))
