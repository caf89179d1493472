"""Variational autoencoder on dynamically binarized MNIST: 784-200-200-50 tanh, Bernoulli decoder.

Encoder 784-200-200 (tanh) -> mean, log-variance (50); z = mean + exp(logvar/2) * eps;
decoder 50-200-200 (tanh) -> 784 Bernoulli logits. Loss = reconstruction (bce summed over the
pixels) + vae_kl (weight = beta = 1): the negative ELBO in nats per example. Every training step
sees a fresh Bernoulli sample of each image (input_noise.binarize). After training, the
importance-weighted bound with k = 5000 samples (config.evals.iwae) estimates the test NLL.

  :conv      the convolutional body (conv 16-32, stride 2) around the same Gaussian heads
  :fashion   the full Fashion-MNIST (binarized the same way)
  :beta4     beta-VAE with beta = 4 (the vae_kl weight)
  :logistic  the grey levels themselves (no binarization) under a discretized logistic decoder
             (256 levels, a learned scale per pixel): NLL in nats per 8-bit digit

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.run \
        --config=experiments/vae_mnist.py --workdir=workdirs/vae_mnist
    python -m aelab.run --config=experiments/vae_mnist.py:fashion \
        --workdir=workdirs/vae_mnist_fashion

Expected figure: test `loss` (negative ELBO, one sample) and `iwae_neg_elbo` (5000-sample ELBO)
about 104 nats and `iwae_nll` (the IWAE bound, k = 5000) about 97, i.e. 7 nats tighter
(Fashion-MNIST: 242.8 and 239.4). The IWAE pass takes ~10 minutes of a 2-core CPU. The literature's
~86.8 nats (one stochastic layer, k = 5000) needs the full 60k training set and thousands of
epochs; this run has 9k digits and a few minutes of CPU. Plots: samples.png, latent.png (PCA of
the posterior means coloured by digit), reconstructions.png.
`:tiny` runs 60 steps on 1000 digits with k = 20 (used by the tests).
"""

from mnist_ae import get_config as mnist_ae_config

from aelab.config import defaults, parse_arg


def get_config(arg=None):
  v = parse_arg(arg, tiny=False, conv=False, fashion=False, beta4=False, logistic=False)
  config = mnist_ae_config()
  if v.fashion:
    config.dataset = defaults.dataset('fashion_mnist')
  config.input_noise = defaults.input_noise(binarize=True)
  config.model = defaults.model('vae', body='conv' if v.conv else 'dense', hidden=(200, 200),
                                channels=(16, 32), latent=50,
                                activation='relu' if v.conv else 'tanh', likelihood='bernoulli')
  if v.logistic:
    config.input_noise = defaults.input_noise()
    config.model.likelihood = 'logistic'
  config.loss = defaults.loss(
      reconstruction=dict(weight=1.0, kind='logistic' if v.logistic else 'bce', reduction='sum'),
      vae_kl=dict(weight=4.0 if v.beta4 else 1.0, warmup_steps=0))
  config.train.update(batch_size=100, num_epochs=20 if v.fashion else 150, log_every=200,
                      checkpoint_every=2000)
  if v.conv and not v.tiny:
    config.train.scan_unroll = 10  # XLA:CPU convs in a rolled scan run several times slower
  config.evals.val.every = 2000
  config.evals.iwae = defaults.evaluator('iwae', samples=5000, batch_size=100)
  if v.tiny:
    defaults.tiny_images(config)
    config.model.update(hidden=(64, 64), channels=(8, 16), latent=8)
    config.evals.iwae.update(samples=20, examples=100)
  return config
