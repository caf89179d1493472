"""Stacked sparse autoencoder, UFLDL's recipe: greedy layer-wise pretraining, a softmax on the
frozen stacked features, then fine-tuning of the whole network with labels (and the same network
trained from random weights with the same fine-tuning budget, the baseline).

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.run \
        --config=experiments/stacked_sparse_mnist.py --workdir=workdirs/stacked_ufldl
    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.run \
        --config=experiments/stacked_sparse_mnist.py:posted --workdir=workdirs/stacked_posted

Runs land in DIR/stage1, DIR/stage2 (each an ordinary aelab run: checkpoints, metrics, plots),
DIR/features (the softmax on the frozen features), DIR/finetune and DIR/scratch; DIR/summary.json
and the printed report hold each stage's reconstruction error and the three test accuracies;
DIR/plots/ stage 1's filters and the accuracy over fine-tuning steps, pretrained vs scratch.

Default (UFLDL's exercise): 784-200-200-10, sigmoid units. Each stage minimises
0.5 * sum ||x_hat - x||^2 / m + beta * sum_j KL(rho || rho_hat_j) + (lambda / 2) sum W^2 with
rho = 0.1, beta = 3, lambda = 3e-3, by full-batch L-BFGS (minFunc in UFLDL; optax.lbfgs here,
`train.batch_size = 0`: the whole training split every iteration), 400 iterations per stage; the
softmax (weight decay 1e-4) 100 iterations and the fine-tuning 400, also L-BFGS. UFLDL reports
87.7% test accuracy before and 97.6% after fine-tuning on the full 60k MNIST; the shared data
here is a 10k training subset (9k train / 1k val), so expect lower figures.

`:posted`: the network a user posted (TensorFlow 1): 784-1000-1500-10, sigmoid; each stage
squared error + beta * KL(rho || rho_hat) + lambda * L2 of the weights (rho 0.1, beta 3, lambda
1e-4), Adam, 10 epochs, batch 160; the softmax and the fine-tuning RMSProp (lr 0.001, decay 0.9),
10 epochs, batch 160. Their code computes rho_hat as ONE scalar: the sum over the batch and all
units divided by the number of units; aelab's kl_sparsity uses rho_hat_j, the mean activation of
each unit j over the batch, which is what the KL sparsity penalty is defined on (UFLDL), so this
config does not reproduce that bug.

`:fashion` trains on the full Fashion-MNIST; `:tiny` in seconds (the tests).

Measured (test accuracy: frozen features / fine-tuned / from scratch; 2-core CPU):
UFLDL on the MNIST subset 0.9160 / 0.9627 / 0.9600 (220 s), on Fashion-MNIST 0.7805 / 0.8885 /
0.8826 (840 s); `:posted` 0.2034 / 0.9227 / 0.9212 (38 s) and 0.1868 / 0.8688 / 0.8700 (163 s).
Why the posted network's frozen features are poor: docs/stacked.md.
"""

import ml_collections

from aelab.config import defaults, parse_arg


def _ufldl(tiny: bool) -> ml_collections.ConfigDict:
  iterations = 30 if tiny else 400
  pretrain = dict(
      model=defaults.model('dense', activation='sigmoid', output_activation='sigmoid'),
      loss=defaults.loss(reconstruction=dict(weight=0.5, kind='mse', reduction='sum'),
                         kl_sparsity=dict(weight=3.0, rho=0.1, layer='code'),
                         weight_decay=dict(weight=3e-3)),
      optimizer=defaults.optimizer(name='lbfgs'),
      train=defaults.train(batch_size=0, num_steps=iterations, steps_per_call=10, log_every=50,
                           checkpoint_every=100))
  lbfgs = defaults.optimizer(name='lbfgs')
  finetune = dict(optimizer=lbfgs, train=defaults.train(
      batch_size=0, num_steps=iterations, steps_per_call=10, log_every=50, checkpoint_every=100),
      loss=defaults.loss(softmax_cross_entropy=dict(weight=1.0), weight_decay=dict(weight=1e-4)))
  features = dict(finetune, train=defaults.train(
      batch_size=0, num_steps=iterations // 4, steps_per_call=5, log_every=25,
      checkpoint_every=100))
  return defaults.stack(pretrain, finetune, features, layers=(200, 200), eval_every=50)


def _posted(tiny: bool) -> ml_collections.ConfigDict:
  train = defaults.train(batch_size=160, num_epochs=10, log_every=100, checkpoint_every=1000)
  pretrain = dict(
      model=defaults.model('dense', activation='sigmoid', output_activation='sigmoid'),
      loss=defaults.loss(reconstruction=dict(weight=1.0, kind='mse'),
                         kl_sparsity=dict(weight=3.0, rho=0.1, layer='code'),
                         weight_decay=dict(weight=1e-4)),
      optimizer=defaults.optimizer(name='adam', learning_rate=1e-3), train=train)
  finetune = dict(optimizer=defaults.optimizer(name='rmsprop', learning_rate=1e-3, momentum=0.0),
                  train=train)
  return defaults.stack(pretrain, finetune, layers=(1000, 1500), eval_every=100)


def get_config(arg=None):
  v = parse_arg(arg, tiny=False, fashion=False, posted=False)
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = defaults.dataset('fashion_mnist' if v.fashion else 'mnist')
  config.preprocessing = 'none'
  config.stack = _posted(v.tiny) if v.posted else _ufldl(v.tiny)
  if v.tiny:
    config.dataset.update(train_limit=1000, test_limit=500)
    config.stack.layers = (32, 16)
    for group in (config.stack.pretrain, config.stack.finetune, config.stack.features):
      group.train.checkpoint_every = 10
      if v.posted:
        group.train.update(batch_size=50, num_epochs=0, num_steps=40, log_every=20)
    config.stack.eval_every = 10
  return config
