"""VQ-VAE on dynamically binarized MNIST: conv encoder 32-64 (stride 2), a 7x7 grid of 16-wide
vectors, each replaced by its nearest of 512 codes, Bernoulli decoder.

Encoder: conv 32, 64 (3x3, stride 2, relu), a 1x1 conv to 16 channels: z_e, 49 vectors per digit;
z_q = the nearest codebook row of each; the decoder (dense to 7x7x64, transposed convs) maps z_q
to 784 Bernoulli logits, the gradient passing the quantisation straight through. The codebook
follows moving averages of its vectors (decay 0.99) and a code unused for 100 steps restarts at
a random vector of the batch. Loss = reconstruction (bce summed over the pixels) + vq_commitment
(beta = 0.25). Every step sees a fresh Bernoulli sample of each image (input_noise.binarize).
The codebook evaluator reports test perplexity, usage and dead codes.

  :fashion   the full Fashion-MNIST (binarized the same way)
  :noema     the codebook trained by the vq_codebook loss term (weight 1) instead of moving
             averages, without restarts (the paper's first formulation)

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.run \
        --config=experiments/vqvae_mnist.py --workdir=workdirs/vqvae_mnist
    python -m aelab.run --config=experiments/vqvae_mnist.py:fashion \
        --workdir=workdirs/vqvae_mnist_fashion

Expected figure (20 epochs of the shared 9k-digit subset, 1800 steps, 3.3 minutes of a loaded
2-core CPU): test `reconstruction` about 37.4 nats per binarized digit (not a likelihood bound:
the code's prior is not in it), bce per pixel against the grey levels 0.109, R^2 0.84;
`codebook_perplexity` about 73 of the 512 codes, every code used on the test split
(`codebook_usage` 1, `codebook_dead` 0). plots/samples.png decodes codes drawn from the fitted
independent-position prior: strokes without a whole digit's shape (the paper fits a PixelCNN).
`:tiny` runs 60 steps on 1000 digits with 32 codes of width 4 (used by the tests).
"""

from mnist_ae import get_config as mnist_ae_config

from aelab.config import defaults, parse_arg


def get_config(arg=None):
  v = parse_arg(arg, tiny=False, fashion=False, noema=False)
  config = mnist_ae_config()
  if v.fashion:
    config.dataset = defaults.dataset('fashion_mnist')
  config.input_noise = defaults.input_noise(binarize=True)
  config.model = defaults.model('vqvae', body='conv', channels=(32, 64), embedding_dim=16,
                                codes=512, activation='relu', likelihood='bernoulli',
                                ema=not v.noema, restart_steps=0 if v.noema else 100)
  terms = dict(reconstruction=dict(weight=1.0, kind='bce', reduction='sum'),
               vq_commitment=dict(weight=0.25))
  if v.noema:
    terms['vq_codebook'] = dict(weight=1.0)
  config.loss = defaults.loss(**terms)
  config.train.update(batch_size=100, num_epochs=20, log_every=200, checkpoint_every=2000,
                      scan_unroll=10)  # XLA:CPU convs in a rolled scan run several times slower
  config.evals.val.every = 2000
  config.evals.codebook = defaults.evaluator('codebook', split='test')
  if v.tiny:
    defaults.tiny_images(config)
    config.model.update(channels=(8, 16), embedding_dim=4, codes=32,
                        restart_steps=0 if v.noema else 20)
  return config
