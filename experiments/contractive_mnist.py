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

from aelab import data, losses, models
from aelab.trainer import optim, train
from aelab.config import tiny_images, variants


def get_config(arg=None):
  import ml_collections
  v = variants(arg, ('tiny', 'plain', 'exact', 'fashion'))
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = data.defaults('fashion_mnist' if 'fashion' in v else 'mnist')
  config.preprocessing = 'none'
  config.model = models.defaults('dense', hidden=(256,), activation='sigmoid',
                                 output_activation='sigmoid', tied=True)
  config.loss = losses.defaults(
      reconstruction=dict(weight=1.0, kind='bce', reduction='sum'),
      # weight 1e-12 in :plain keeps the term logged without changing the objective.
      contractive=dict(weight=1e-12 if 'plain' in v else 0.1,
                       method='exact' if 'exact' in v else 'sigmoid_layer'))
  config.optimizer = optim.defaults(name='adam', learning_rate=1e-3)
  config.train = train.defaults(batch_size=128, num_epochs=8 if 'fashion' in v else 40,
                                log_every=100, eval_every=1000, checkpoint_every=1000)
  if 'tiny' in v:
    tiny_images(config)
    config.model.hidden = (32,)
  return config
