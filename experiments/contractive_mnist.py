"""Contractive autoencoder (Rifai et al. 2011): one sigmoid layer 784-256 with tied decoder weights,
sigmoid output, cross-entropy summed over the pixels, plus lambda * ||J_f(x)||_F^2, the squared
Frobenius norm of the encoder's Jacobian (the `contractive` loss term), lambda = 0.1.

The default uses the closed form for a sigmoid layer, sum_j (h_j (1 - h_j))^2 sum_i W_ij^2;
`:exact` computes the full Jacobian with jax.jacrev for any encoder (same value, ~100x slower
here). `:plain` drops the penalty (the baseline); `:fashion` trains on the full Fashion-MNIST.

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.run \
        --config=experiments/contractive_mnist.py --workdir=workdirs/contractive_mnist
    python -m aelab.run --config=experiments/contractive_mnist.py:fashion \
        --workdir=workdirs/contractive_mnist_fashion

Expected figure: test `contractive` (mean ||J||_F^2 per example) about 30% below the plain tied
AE's (`:plain` still logs it, at weight 1e-12): 79 vs 113 on MNIST, 55 vs 99 on Fashion-MNIST,
for ~0.003 more BCE per pixel.
`:tiny` runs 60 steps on 1000 digits (used by the tests).
"""

from mnist_ae import get_config as mnist_ae_config

from aelab.config import defaults, parse_arg


def get_config(arg=None):
  v = parse_arg(arg, tiny=False, plain=False, exact=False, fashion=False)
  config = mnist_ae_config()
  if v.fashion:
    config.dataset = defaults.dataset('fashion_mnist')
  config.model.update(hidden=(256,), activation='sigmoid', tied=True)
  config.loss = defaults.loss(
      reconstruction=dict(weight=1.0, kind='bce', reduction='sum'),
      # weight 1e-12 in :plain keeps the term logged without changing the objective.
      contractive=dict(weight=1e-12 if v.plain else 0.1,
                       method='exact' if v.exact else 'sigmoid_layer'))
  config.train.update(num_epochs=8 if v.fashion else 40, log_every=100, checkpoint_every=1000)
  config.evals.val.every = 1000
  if v.tiny:
    defaults.tiny_images(config)
    config.model.hidden = (32,)
  return config
