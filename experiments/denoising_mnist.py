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

Expected figure: test `noisy_mse` / `noisy_bce` (reconstruction of corrupted test digits against
the clean ones; both runs see the same corrupted digits) clearly lower for the denoiser than for
the plain AE: MSE 0.018 vs 0.073 (Gaussian), 0.010 vs 0.021 (masking), 0.013 vs 0.041 (salt and
pepper), 0.017 vs 0.058 on Fashion-MNIST; `plots/reconstructions.png` shows clean / corrupted /
denoised rows.
`:tiny` runs 60 steps on 1000 digits (used by the tests).
"""

from aelab import corruption, data, losses, models
from aelab.trainer import optim, train
from aelab.config import tiny_images, variants


def get_config(arg=None):
  import ml_collections
  v = variants(arg, ('tiny', 'plain', 'masking', 'salt_and_pepper', 'fashion'))
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = data.defaults('fashion_mnist' if 'fashion' in v else 'mnist')
  config.preprocessing = 'none'
  if 'masking' in v:
    config.input_noise = corruption.defaults(corruption='masking', level=0.25)
  elif 'salt_and_pepper' in v:
    config.input_noise = corruption.defaults(corruption='salt_and_pepper', level=0.2)
  else:
    config.input_noise = corruption.defaults(corruption='gaussian', level=0.5, clip=True)
  config.input_noise.train = 'plain' not in v
  config.model = models.defaults('dense', hidden=(256, 64), activation='relu',
                                 output_activation='sigmoid')
  config.loss = losses.defaults(reconstruction=dict(weight=1.0, kind='bce'))
  config.optimizer = optim.defaults(name='adam', learning_rate=1e-3)
  config.train = train.defaults(batch_size=128, num_epochs=8 if 'fashion' in v else 40,
                                log_every=100, eval_every=1000, checkpoint_every=1000)
  if 'tiny' in v:
    tiny_images(config)
    config.model.hidden = (64, 16)
  return config
