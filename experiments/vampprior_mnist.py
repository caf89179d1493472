"""VAE with a VampPrior (Tomczak & Welling 2018) on dynamically binarized MNIST: the prior is the
mixture of the encoder's posteriors at K = 500 learned pseudo-inputs.

The encoder and decoder of vae_mnist.py (784-200-200-[50] tanh, Bernoulli decoder); loss =
reconstruction (bce summed over the pixels) + kl_sample (log q(z|x) - log p(z) at the one draw:
the mixture has no closed-form KL), its weight warmed up from 0 over the first third of training
as the paper warms it up.

  :iwae      trained on the k = 5 importance-weighted bound instead
  :fashion   the full Fashion-MNIST, binarized the same way

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.run \
        --config=experiments/vampprior_mnist.py --workdir=workdirs/vampprior

test/iwae_nll (k = 5000) is the test NLL in nats. `:tiny` (K = 20) trains 60 steps on 1000
digits (used by the tests).
"""

from vae_mnist import get_config as vae_config

from aelab.config import defaults, parse_arg


def get_config(arg=None):
  v = parse_arg(arg, tiny=False, iwae=False, fashion=False)
  config = vae_config('fashion' if v.fashion else None)
  config.model = defaults.model('vampprior', hidden=(200, 200), latent=50, activation='tanh',
                                likelihood='bernoulli', pseudo_inputs=500)
  rows = 54000 if v.fashion else 9000  # the training split (val takes a tenth)
  steps = config.train.num_epochs * rows // config.train.batch_size
  config.loss = (defaults.loss(iwae=dict(weight=1.0, samples=5)) if v.iwae else defaults.loss(
      reconstruction=dict(weight=1.0, kind='bce', reduction='sum'),
      kl_sample=dict(weight=1.0, warmup_steps=steps // 3)))
  if v.tiny:
    defaults.tiny_images(config)
    config.model.update(hidden=(64, 64), latent=8, pseudo_inputs=20)
    if not v.iwae:
      config.loss.kl_sample.warmup_steps = 20
    config.evals.iwae.update(samples=20, examples=100)
  return config
