"""Disentangling VAEs on sprites (dSprites' factor grid, rendered by aelab: dataset `sprites32`,
32 x 32; `:size64` for the 64 x 64 one), scored by the `disentanglement` evaluator (BetaVAE and
FactorVAE scores, MIG, DCI, SAP, modularity and explicitness, the code's total correlation).

The models of Locatello et al. 2019 (google-research/disentanglement_lib), each a VAE with
disentanglement_lib's convolutional encoder and decoder (4 convolutions of 32, 32, 64, 64
channels, kernel 4, stride 2, ReLU; a dense 256; 10 latents; a Bernoulli decoder), Adam 1e-4,
batches of 64, and one regulariser whose strength is `strength=`:

  model=vae           reconstruction + vae_kl
  model=beta_vae      beta x vae_kl                                  beta (default 4)
  model=annealed_vae  gamma |KL - C(t)|, C to c_max over the first third of the steps (100k of
                      disentanglement_lib's 300k)                    c_max (default 25), gamma 1000
  model=beta_tcvae    vae_kl + (beta - 1) x total_correlation         beta (default 6)
  model=factor_vae    vae_kl + gamma x factor_tc, the discriminator trained by its own Adam
                      (1e-4, b1 0.5, b2 0.9)                          gamma (default 10)
  model=dip_vae_i     vae_kl + lambda_od x dip (kind i, lambda_d = 10 lambda_od)  lambda_od (10)
  model=dip_vae_ii    vae_kl + lambda_od x dip (kind ii, lambda_d = lambda_od)     lambda_od (10)

`steps=N` trains N steps (default 3,000: the CPU budget of the sweep below, about 10 minutes a
run on one core; disentanglement_lib trains 300k); the metrics run at the end on their own draws
of the grid, with `metric_points=N` points for each metric's training set (default 1,000, a CPU
budget; disentanglement_lib's 10,000 with `metric_points=10000`; half as many for its test set).
`:tiny` trains in seconds (the tests).

    python -m aelab.run --config=experiments/disentangle_sprites.py:model=beta_tcvae,strength=6 \
        --workdir=workdirs/btcvae

`get_sweep`: VAE, beta-VAE, beta-TCVAE, FactorVAE and DIP-VAE-II at two strengths each (VAE at
its one), two seeds each; AnnealedVAE and DIP-VAE-I once:

    python -m aelab.sweep --config=experiments/disentangle_sprites.py --workdir=sweeps/disentangle \
        --parallel=2 --seeds_together --metric=test/mig,...

The reference run (109 minutes on a shared 2-core CPU), its table and figure, and what they say:
docs/disentanglement.md, "The reference sweep".
"""

import ml_collections

from aelab.config import defaults, parse_arg
from aelab.config.sweeps import chain, product, sweep

# Each model's regulariser (loss terms beside the Bernoulli reconstruction) at strength s, and
# its default strength (disentanglement_lib's ranges: beta 1-16, c_max 5-100, beta-TC 1-10,
# gamma 10-100, lambda_od 1-50).
MODELS = {
    'vae': (None, lambda s: dict(vae_kl=dict(weight=1.0))),
    'beta_vae': (4.0, lambda s: dict(vae_kl=dict(weight=s))),
    'annealed_vae': (25.0, lambda s: dict(kl_capacity=dict(weight=1000.0, capacity=s))),
    'beta_tcvae': (6.0, lambda s: dict(vae_kl=dict(weight=1.0),
                                       total_correlation=dict(weight=s - 1.0))),
    'factor_vae': (10.0, lambda s: dict(vae_kl=dict(weight=1.0), factor_tc=dict(weight=s),
                                        discriminator=dict(weight=1.0))),
    'dip_vae_i': (10.0, lambda s: dict(vae_kl=dict(weight=1.0),
                                       dip=dict(weight=s, kind='i', diagonal=10.0))),
    'dip_vae_ii': (10.0, lambda s: dict(vae_kl=dict(weight=1.0),
                                        dip=dict(weight=s, kind='ii', diagonal=1.0))),
}
# The sweep: two strengths per model (the VAE has none), two seeds; the others once.
SWEPT = {'vae': (None,), 'beta_vae': (4.0, 16.0), 'beta_tcvae': (4.0, 10.0),
         'factor_vae': (10.0, 40.0), 'dip_vae_ii': (1.0, 10.0)}
ONCE = ('annealed_vae', 'dip_vae_i')
SEEDS = (0, 1)
METRICS = ('beta_vae', 'factor_vae', 'mig', 'dci', 'sap', 'modularity', 'unsupervised')

VARIANTS = dict(model='vae', strength=0.0, steps=3000, metric_points=1000, size64=False,
                tiny=False)


def get_config(arg=None):
  v = parse_arg(arg, **VARIANTS)
  if v.model not in MODELS:
    from aelab.errors import AelabError  # jax-free
    raise AelabError(f'unknown variant model={v.model!r}; valid: {", ".join(MODELS)}')
  default, regulariser = MODELS[v.model]
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = defaults.dataset('sprites' if v.size64 else 'sprites32')
  config.preprocessing = 'none'
  config.model = defaults.model(
      'factor_vae' if v.model == 'factor_vae' else 'vae', body='conv', channels=(32, 32, 64, 64),
      kernel_size=4, conv_hidden=(256,), latent=10, activation='relu', likelihood='bernoulli')
  config.loss = defaults.loss(reconstruction=dict(weight=1.0, kind='bce', reduction='sum'),
                              **regulariser(v.strength or default))
  config.optimizer = defaults.optimizer(name='adam', learning_rate=1e-4)
  if v.model == 'factor_vae':
    config.optimizer.groups = dict(discriminator=dict(learning_rate=1e-4, b1=0.5, b2=0.9))
  config.train = defaults.train(batch_size=64, num_epochs=0, num_steps=v.steps, log_every=500,
                                checkpoint_every=1000, steps_per_call=10,
                                scan_unroll=10)  # XLA:CPU convs in a rolled scan: ~5x slower
  config.evals = defaults.evals(every=5000)
  config.evals.disentanglement = defaults.evaluator(
      'disentanglement', split='test', every=0, metrics=METRICS, **metric_counts(v.metric_points))
  if v.tiny:
    config.dataset.update(train_preview=256, val_rows=128, test_rows=128)
    config.model.update(channels=(8, 8), conv_hidden=(16,), latent=4)
    if v.model == 'factor_vae':
      config.model.discriminator = (32, 32)
    config.train.update(num_steps=40, log_every=10, checkpoint_every=20, steps_per_call=10,
                        scan_unroll=1, progress=False)   # tiny convs: compile time dominates
    config.evals.val.every = 0
    config.evals.disentanglement.update(metric_counts(200))
  if 'kl_capacity' in config.loss:  # C reaches c_max a third of the way, as disentanglement_lib's
    config.loss.kl_capacity.steps = max(config.train.num_steps // 3, 1)   # 100k of its 300k
  return config


def metric_counts(points):
  """The disentanglement evaluator's sample counts: `points` for each metric's training set (and
  the FactorVAE score's variance estimate), half as many for its test set."""
  half = max(points // 2, 1)
  return dict(
      beta_vae_num_train=points, beta_vae_num_eval=half, factor_vae_num_train=points,
      factor_vae_num_eval=half, factor_vae_num_variance_estimate=points, mig_num_train=points,
      dci_num_train=points, dci_num_test=half, sap_num_train=points, sap_num_test=half,
      modularity_num_train=points, modularity_num_test=half, unsupervised_num_train=points)


def get_sweep(arg=None):
  parse_arg(arg, **VARIANTS)
  rest = [w for w in (arg or '').split(',') if w.strip()]
  swept = [','.join([f'model={m}', *([f'strength={s:g}'] if s else []), *rest])
           for m, strengths in SWEPT.items() for s in strengths]
  once = [','.join([f'model={m}', *rest]) for m in ONCE]
  return chain(product(sweep('arg', swept), sweep('seed', list(SEEDS))),
               product(sweep('arg', once), sweep('seed', [0])))
