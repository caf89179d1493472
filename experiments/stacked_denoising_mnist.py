"""Stacked denoising autoencoder (Vincent et al. 2010; the Theano SdA tutorial): three 1000-unit
sigmoid layers, each pretrained to reconstruct its clean input from a masked copy (25% of the
inputs set to 0), cross-entropy summed over the units; then a softmax on the frozen features,
fine-tuning of the whole 784-1000-1000-1000-10 network, and the same network from scratch.

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.run \
        --config=experiments/stacked_denoising_mnist.py --workdir=workdirs/stacked_denoising

Stage k > 1 is trained on the clean codes of stage k - 1 and masks them itself. The tutorial
pretrains with SGD (lr 0.001, 15 epochs, batch 1) and fine-tunes with SGD (lr 0.1, up to 1000
epochs with early stopping) on the full 60k MNIST and reports about 1.3% test error; this config
is sized for a 2-core CPU and the shared 10k subset (9k train / 1k val): Adam (lr 1e-3), batch 128,
15 epochs per stage, 30 epochs of fine-tuning, so expect a higher error. Runs land in
DIR/stage1..3, DIR/features, DIR/finetune, DIR/scratch (see stacked_sparse_mnist.py).
`:fashion` trains on the full Fashion-MNIST; `:tiny` in seconds (the tests).

Measured (test accuracy: frozen features / fine-tuned / from scratch; 2-core CPU): MNIST subset
0.9342 / 0.9635 / 0.9505 (69 s); Fashion-MNIST (3 epochs per stage) 0.8485 / 0.8843 / 0.8689 (86 s).
"""

import ml_collections

from aelab.config import defaults, parse_arg


def get_config(arg=None):
  v = parse_arg(arg, tiny=False, fashion=False)
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = defaults.dataset('fashion_mnist' if v.fashion else 'mnist')
  config.preprocessing = 'none'
  epochs = 3 if v.fashion else 15
  pretrain = dict(
      model=defaults.model('dense', activation='sigmoid', output_activation='sigmoid'),
      loss=defaults.loss(reconstruction=dict(weight=1.0, kind='bce', reduction='sum')),
      optimizer=defaults.optimizer(name='adam', learning_rate=1e-3),
      train=defaults.train(batch_size=128, num_epochs=epochs, log_every=100,
                           checkpoint_every=1000),
      input_noise=defaults.input_noise(corruption='masking', level=0.25))
  finetune = dict(optimizer=defaults.optimizer(name='adam', learning_rate=1e-3),
                  train=defaults.train(batch_size=128, num_epochs=6 if v.fashion else 30,
                                       log_every=100, checkpoint_every=1000))
  config.stack = defaults.stack(pretrain, finetune, layers=(1000, 1000, 1000), eval_every=500)
  if v.tiny:
    config.dataset.update(train_limit=1000, test_limit=500)
    config.stack.layers = (32, 32, 16)
    for group in (config.stack.pretrain, config.stack.finetune, config.stack.features):
      group.train.update(num_epochs=0, num_steps=40, batch_size=50, log_every=20,
                         checkpoint_every=20)
    config.stack.eval_every = 10
  return config
