"""The generative autoencoders side by side on MNIST: one budget, one table (docs/generative.md).

Each model is its family's experiment file (vae_mnist, iwae_mnist, vampprior_mnist, vqvae_mnist,
wae_rae_mnist) on the shared split (9k / 1k of the 10k training subset, the official 10k test
set), trained for the same number of epochs (`epochs`, 60 by default: 5400 steps of 100), then
evaluated on the test split: the IWAE bound with k = 5000 on its first `nll_examples` digits
(the models with a likelihood), the Fréchet distance, precision and recall of 10k samples and of
the reconstructions (evaluator frechet), and the models' own metrics. Every model with a
likelihood starts its decoder's output at the logits of the training digits' mean
(`model.output_bias='data'`, as Burda et al.'s code).

  model=   vae, beta_vae, iwae5, iwae50, vae2 (two stochastic layers, trained as a VAE), iwae2
           (the same as an IWAE, k = 5), vampprior, vqvae, wae, rae_l2, rae_gp, ae (the plain
           autoencoder; its samples, like WAE's and RAE's, from a Gaussian mixture fitted to its
           training codes)
  :fashion the full Fashion-MNIST (the reference table there: `:fashion,epochs=5`)

The reference sweep, `get_sweep`: every model, 3 seeds for vae, iwae5 and vampprior and 1 for the
others (1 for every model with `:fashion`); DIR/results.md ends with the table over seeds:

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.sweep \
        --config=experiments/generative_mnist.py --workdir=sweeps/generative --parallel=2 \
        --metric=test/iwae_nll,test/iwae_neg_elbo,test/mse,test/fd_samples,test/fd_recon,\
test/sample_precision,test/sample_recall,test/active_units

The tables it gave (about 50 minutes for MNIST and 28 for Fashion-MNIST on a shared 2-core CPU) and
what they say are in docs/generative.md.
"""

import importlib

from aelab.config import defaults, parse_arg
from aelab.config.sweeps import chain, product, sweep

MODELS = dict(
    vae=('vae_mnist', ''), beta_vae=('vae_mnist', 'beta4'),
    iwae5=('iwae_mnist', 'k=5'), iwae50=('iwae_mnist', 'k=50'),
    vae2=('iwae_mnist', 'two_layer,k=1'), iwae2=('iwae_mnist', 'two_layer,k=5'),
    vampprior=('vampprior_mnist', ''), vqvae=('vqvae_mnist', ''),
    wae=('wae_rae_mnist', 'model=wae'), rae_l2=('wae_rae_mnist', 'model=rae_l2'),
    rae_gp=('wae_rae_mnist', 'model=rae_gp'), ae=('wae_rae_mnist', 'model=ae'))
SEEDED = ('vae', 'iwae5', 'vampprior')   # 3 seeds each in the reference sweep
VARIANTS = dict(model='vae', tiny=False, fashion=False, epochs=60, nll_examples=1000)


def get_config(arg=None):
  v = parse_arg(arg, **VARIANTS)
  if v.model not in MODELS:
    from aelab.errors import AelabError  # jax-free
    raise AelabError(f'unknown variant model={v.model!r}; valid: {", ".join(MODELS)}')
  name, variant = MODELS[v.model]
  words = [w for w in (variant, 'fashion' if v.fashion else '', 'tiny' if v.tiny else '') if w]
  config = importlib.import_module(name).get_config(','.join(words))
  if 'output_bias' in config.model:  # every model with a likelihood, as Burda et al.'s code
    config.model.output_bias = 'data'
  config.train.update(num_epochs=v.epochs, checkpoint_every=0)
  steps = v.epochs * (54000 if v.fashion else 9000) // config.train.batch_size
  for term in config.loss.values():  # a KL warm-up keeps its share of the budget: a third
    if term.get('warmup_steps'):
      term.warmup_steps = steps // 3
  config.evals.val.every = 0
  if 'iwae' in config.evals:
    config.evals.iwae.examples = v.nll_examples
  config.evals.fd = defaults.evaluator('frechet', split='test')
  if v.tiny:
    config.train.update(num_epochs=0, num_steps=60)
    config.evals.fd.update(samples=500, feature_epochs=1)
    if 'iwae' in config.evals:
      config.evals.iwae.update(samples=20, examples=100)
  return config


def get_sweep(arg=None):
  v = parse_arg(arg, **VARIANTS)
  seeds = [0] if v.fashion else [0, 1, 2]   # one seed is enough on Fashion-MNIST
  seeded = product(sweep('arg', [f'model={m}' for m in SEEDED]), sweep('seed', seeds))
  single = product(sweep('arg', [f'model={m}' for m in MODELS if m not in SEEDED]),
                   sweep('seed', [0]))
  return chain(seeded, single)
