"""Importance-weighted autoencoders on dynamically binarized MNIST (Burda, Grosse & Salakhutdinov
2016): trained on the k-sample bound, one or two stochastic layers, Bernoulli decoder.

  one layer   784-200-200-[50] tanh (the VAE of vae_mnist.py), trained on the iwae term: -L_k
              with k = 5 (`k=50` for 50; `k=1` is the VAE: reconstruction + the closed-form KL)
  :two_layer  Burda's 784-100-100-[100]-50-50-[50] (model hierarchical_vae), as an IWAE, or
              with `k=1` as a VAE (reconstruction + kl_sample, the KL of one draw, its weight
              warmed up over the first third of training as Sønderby et al. 2016 do)
  :dreg       the DReG gradient estimator (Tucker et al. 2019) instead of the plain one
  :fashion    the full Fashion-MNIST, binarized the same way

Both start the decoder's output bias at the logits of the training digits' mean
(`model.output_bias='data'`), as Burda et al.'s code does: from zeros, the first steps push the
whole network, the tanh encoder included, towards the data's mean, and the two-layer model's
codes never recover (its test NLL at 60 epochs: 145.6 nats from zeros).

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.run \
        --config=experiments/iwae_mnist.py:k=50 --workdir=workdirs/iwae50
    python -m aelab.run --config=experiments/iwae_mnist.py:two_layer --workdir=workdirs/iwae2

The test NLL is the iwae evaluator's bound with k = 5000 (test/iwae_nll); test/loss is the
training objective on the test split. Every model here samples from its prior N(0, I) (plots/
samples.png). `:tiny` runs 60 steps on 1000 digits with k = 20 at test time (used by the tests).
"""

from vae_mnist import get_config as vae_config

from aelab.config import defaults, parse_arg

VARIANTS = dict(tiny=False, k=5, two_layer=False, dreg=False, fashion=False)


def get_config(arg=None):
  v = parse_arg(arg, **VARIANTS)
  config = vae_config('fashion' if v.fashion else None)
  config.model.output_bias = 'data'   # Burda et al.'s code starts the output at the data's logits
  if v.two_layer:
    config.model = defaults.model('hierarchical_vae', hidden=((100, 100), (50, 50)),
                                  latents=(100, 50), activation='tanh', likelihood='bernoulli',
                                  output_bias='data')
  if v.k > 1 or v.dreg:
    config.loss = defaults.loss(iwae=dict(weight=1.0, samples=v.k,
                                          estimator='dreg' if v.dreg else 'iwae'))
  elif v.two_layer:  # the KL warmed up over the first third (without it z_1 collapses too)
    steps = config.train.num_epochs * (54000 if v.fashion else 9000) // config.train.batch_size
    config.loss = defaults.loss(reconstruction=dict(weight=1.0, kind='bce', reduction='sum'),
                                kl_sample=dict(weight=1.0, warmup_steps=steps // 3))
  if v.tiny:
    defaults.tiny_images(config)
    if v.two_layer:
      config.model.update(hidden=((32,), (16,)), latents=(16, 8))
      if 'kl_sample' in config.loss:
        config.loss.kl_sample.warmup_steps = 20
    else:
      config.model.update(hidden=(64, 64), latent=8)
    config.evals.iwae.update(samples=20, examples=100)
  return config
