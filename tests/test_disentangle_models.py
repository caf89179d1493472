"""The disentangling VAEs (experiments/disentangle_sprites.py): each regulariser against a numpy
reference on a fixed batch, FactorVAE's two parameter groups (each term's gradient reaches only
its own group; each group its own optimizer), and a FactorVAE run resumed mid-way, trained
alone or with another seed, ending as an unbroken one."""

import json
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from aelab import losses, models
from aelab.config import defaults
from aelab.errors import AelabError
from aelab.losses import disentangle_terms as dt
from aelab.trainer import checkpoint, optim, train
from aelab.trainer.writers import read_jsonl
import kill_runs
from conftest import experiment

RNG = np.random.default_rng(0)
B, L = 7, 3
MEAN = RNG.normal(size=(B, L)).astype(np.float32)
LOGVAR = (0.3 * RNG.normal(size=(B, L))).astype(np.float32)
Z = (MEAN + np.exp(LOGVAR / 2) * RNG.normal(size=(B, L))).astype(np.float32)


def _out(step=None, **aux):
  aux = {'mean': jnp.asarray(MEAN), 'logvar': jnp.asarray(LOGVAR), 'z': jnp.asarray(Z),
         'code': jnp.asarray(MEAN), **aux}
  return losses.Outputs(x=None, recon=None, aux=aux, params={}, step=step)


def _np_kl():
  return np.mean(np.sum(0.5 * (np.exp(LOGVAR) + MEAN ** 2 - 1 - LOGVAR), axis=1))


@pytest.mark.quick
def test_total_correlation_is_minibatch_weighted_sampling_in_numpy():
  z, m, lv = (a.astype(np.float64) for a in (Z, MEAN, LOGVAR))
  log_q = -0.5 * (math.log(2 * math.pi) + lv[None] + (z[:, None] - m[None]) ** 2 / np.exp(lv[None]))
  lse = lambda a, axis: np.log(np.sum(np.exp(a), axis=axis))  # noqa: E731
  want = np.mean(lse(log_q.sum(2), 1) - lse(log_q, 1).sum(1))
  assert float(dt.total_correlation(_out())) == pytest.approx(want, rel=1e-5)


@pytest.mark.quick
@pytest.mark.parametrize('kind,diagonal', [('i', 10.0), ('ii', 1.0)])
def test_dip_pushes_the_codes_covariance_to_the_identity_as_numpy(kind, diagonal):
  m = MEAN.astype(np.float64)
  cov = np.cov(m.T, bias=True)
  if kind == 'ii':
    cov = cov + np.diag(np.exp(LOGVAR).mean(0))
  off = cov - np.diag(np.diag(cov))
  want = np.sum(off ** 2) + diagonal * np.sum((np.diag(cov) - 1) ** 2)
  assert float(dt.dip(_out(), kind=kind, diagonal=diagonal)) == pytest.approx(want, rel=1e-5)


@pytest.mark.quick
def test_kl_capacity_ramps_linearly_then_holds():
  kl = _np_kl()
  for step, c in ((0, 0.0), (50, 1.0), (100, 2.0), (1000, 2.0)):
    value = dt.kl_capacity(_out(step=jnp.int32(step)), capacity=2.0, steps=100)
    assert float(value) == pytest.approx(abs(kl - c), rel=1e-5)
  assert float(dt.kl_capacity(_out(), capacity=2.0, steps=100)) == pytest.approx(abs(kl - 2.0),
                                                                                 rel=1e-5)


@pytest.mark.quick
def test_factor_terms_are_the_logit_difference_and_the_cross_entropy():
  real, perm, tc = (RNG.normal(size=(B, 2)).astype(np.float32) for _ in range(3))
  out = _out(tc_logits=jnp.asarray(tc), discriminator_real=jnp.asarray(real),
             discriminator_permuted=jnp.asarray(perm))
  assert float(dt.factor_tc(out)) == pytest.approx(np.mean(tc[:, 0] - tc[:, 1]), rel=1e-5)
  log_softmax = lambda a: a - np.log(np.exp(a).sum(1, keepdims=True))  # noqa: E731
  want = -0.5 * (log_softmax(real)[:, 0].mean() + log_softmax(perm)[:, 1].mean())
  assert float(dt.discriminator(out)) == pytest.approx(want, rel=1e-5)
  with pytest.raises(AelabError, match='factor_vae'):
    dt.factor_tc(_out())


def _factor_vae():
  cfg = defaults.model('factor_vae', hidden=(16,), latent=4, discriminator=(8, 8))
  model = models.build(cfg, (6,))
  x = jnp.asarray(RNG.uniform(size=(5, 6)), jnp.float32)
  params = jax.jit(model.init)({'params': jax.random.PRNGKey(0),
                                'noise': jax.random.PRNGKey(1)}, x)['params']
  return model, params, x


@pytest.mark.quick
def test_each_factor_term_trains_only_its_own_parameter_group():
  model, params, x = _factor_vae()
  assert model.param_groups(tuple(params))['discriminator'] == ('discriminator',)

  def grads(term):
    def loss(p):
      _, aux = model.apply({'params': p}, x, rngs={'noise': jax.random.PRNGKey(2)})
      return getattr(dt, term)(losses.Outputs(x=x, recon=None, aux=aux, params=p))
    return jax.jit(jax.grad(loss))(params)

  norms = lambda g: {k: float(optax.tree.norm(v)) for k, v in g.items()}  # noqa: E731
  tc, disc = norms(grads('factor_tc')), norms(grads('discriminator'))
  assert tc['discriminator'] == 0.0 and tc['encoder_1'] > 0 and tc['mean'] > 0
  assert disc['discriminator'] > 0
  assert all(v == 0.0 for k, v in disc.items() if k != 'discriminator')
  # The permuted codes hold each column's values, reordered.
  z = jnp.asarray(RNG.normal(size=(9, 4)), jnp.float32)
  perm = np.asarray(models.factor_vae.permute_dims(jax.random.PRNGKey(3), z))
  np.testing.assert_array_equal(np.sort(perm, 0), np.sort(np.asarray(z), 0))
  assert not np.array_equal(perm, np.asarray(z))


@pytest.mark.quick
def test_a_group_with_its_own_optimizer_updates_as_that_optimizer_alone():
  model, params, _ = _factor_vae()
  cfg = defaults.optimizer(learning_rate=1e-3)
  cfg.groups = dict(discriminator=dict(learning_rate=1e-4, b1=0.5, b2=0.9))
  names = tuple(params)
  tx = optim.make(cfg, 100, param_names=names, groups=model.param_groups(names))
  grads = jax.tree.map(lambda a: jnp.full_like(a, 0.5) + 0.1 * jnp.sign(a), params)
  state = tx.init(params)
  for _ in range(3):
    updates, state = tx.update(grads, state, params)
  main, own = optax.adam(1e-3), optax.adam(1e-4, b1=0.5, b2=0.9)
  for name, want_tx in ((n, own if n == 'discriminator' else main) for n in names):
    s = want_tx.init(params[name])
    for _ in range(3):
      want, s = want_tx.update(grads[name], s, params[name])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), updates[name], want)
  cfg.groups = dict(critic=dict(learning_rate=1e-4))
  with pytest.raises(AelabError, match="'critic', not a parameter group"):
    optim.make(cfg, 100, param_names=names, groups=model.param_groups(names))


def _config(seed=0):
  config = experiment('disentangle_sprites', 'tiny,model=factor_vae')
  config.seed = seed
  config.model.update(body='dense', hidden=(32,))   # the mechanics, not the conv body: faster
  config.evals = ml_collections.ConfigDict(dict(
      test=defaults.evaluator('reconstruction', split='test', every=0)))
  return config


def test_a_resumed_factor_vae_ends_exactly_as_an_unbroken_one_alone_or_with_another_seed(tmp_path):
  whole = train.train_and_evaluate(_config(), tmp_path / 'a')
  stopped = train.train_and_evaluate(_config(), tmp_path / 'b', should_stop=lambda s: s >= 20)
  assert stopped['interrupted'] == 'should_stop' and stopped['step'] == 20
  resumed = train.train_and_evaluate(_config(), tmp_path / 'b')
  a, b = (checkpoint.Checkpoints(tmp_path / w).restore_raw(40)[1]['state'] for w in 'ab')
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert resumed['test'] == whole['test']
  # Two optimizer states (multi_transform's inner states: the main one and the discriminator's).
  assert set(a['opt_state']['inner_states']) == {'main', 'discriminator'}
  rows = [r for r in read_jsonl(tmp_path / 'a' / 'metrics.jsonl') if 'train/loss' in r]
  assert all(0.0 <= r['train/discriminator_accuracy'] <= 1.0 for r in rows)
  assert 'discriminator_accuracy' in whole['test']
  # Seeds trained together: seed 0 trains bit for bit as it did alone.
  together = train.train_together([_config(0), _config(1)], [tmp_path / 'c0', tmp_path / 'c1'])
  assert kill_runs.same_run(tmp_path / 'a', tmp_path / 'c0')['params']
  assert together[0]['test'] == whole['test']
  assert together[1]['test']['loss'] != whole['test']['loss']


def test_a_tiny_beta_tcvae_on_sprites32_trains_and_is_scored_end_to_end(tmp_path):
  """The experiment's :tiny (the conv body, reconstruction + vae_kl + total_correlation) with
  every evaluator it configures: each disentanglement figure finite and in its range, the
  record and the plots written."""
  from aelab.evaluators import disentanglement_metrics as dm
  config = experiment('disentangle_sprites', 'tiny,model=beta_tcvae')
  test = train.train_and_evaluate(config, tmp_path)['test']
  rows = [r for r in read_jsonl(tmp_path / 'metrics.jsonl') if 'train/loss' in r]
  assert rows[-1]['train/loss'] < rows[0]['train/loss']
  assert all(np.isfinite(test[k]) for keys in dm.KEYS.values() for k in keys), test
  for key in ('beta_vae_eval_accuracy', 'factor_vae_eval_accuracy', 'mig', 'dci_disentanglement',
              'dci_completeness', 'dci_informativeness_test', 'sap', 'modularity',
              'explicitness_test'):
    assert 0.0 <= test[key] <= 1.0, (key, test[key])
  assert 0 <= test['factor_vae_active_dims'] <= 4 and 'total_correlation' in test
  written = json.loads((tmp_path / 'disentanglement_test.json').read_text())
  assert written['factors'] == {'shape': 3, 'scale': 6, 'orientation': 40, 'x': 32, 'y': 32}
  assert written['mig'] == test['mig']
  for png in ('factor_response', 'traversals', 'samples', 'reconstructions'):
    assert (tmp_path / 'plots' / f'{png}.png').stat().st_size > 1000, png
