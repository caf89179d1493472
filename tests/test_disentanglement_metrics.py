"""The disentanglement metrics (aelab/evaluators/disentanglement_metrics.py) and their evaluator
(aelab/evaluators/disentanglement.py), on constructed codes of three synthetic factors of 4, 5
and 6 values:

  - the factors themselves (standardised) plus 2 noise dims score near each metric's maximum;
  - a random rotation of those 5 dims keeps the information (DCI informativeness) and loses
    MIG, DCI disentanglement and SAP;
  - a code with one factor replaced by noise loses exactly that factor's share;
  - each score against a hand computation on a tiny case;
and the evaluator end to end: Factors.observe, a fake forward pass, its options and errors;
sprites' Factors.observe against the renderer."""

import json
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import linalg

from aelab.data.dataset import Dataset, Factors, Split
from aelab.evaluators import build, disentanglement
from aelab.evaluators import disentanglement_metrics as dm
from aelab.evaluators.context import Context
from conftest import one_line_error

COUNTS = (4, 5, 6)
K = len(COUNTS)
ROTATION = np.linalg.qr(np.random.default_rng(7).standard_normal((5, 5)))[0]
ROTATION3 = np.linalg.qr(np.random.default_rng(8).standard_normal((3, 3)))[0]
# Small sample counts: every metric in well under a second.
SMALL = {'beta_vae': dict(batch_size=16, num_train=300, num_eval=200),
         'factor_vae': dict(batch_size=16, num_train=300, num_eval=200,
                            num_variance_estimate=1000),
         'mig': dict(num_train=2000), 'dci': dict(num_train=1000, num_test=500),
         'sap': dict(num_train=1000, num_test=500),
         'modularity': dict(num_train=1000, num_test=500), 'unsupervised': dict(num_train=1000)}


def standardised(f: np.ndarray) -> np.ndarray:
  """The factor values scaled to mean 0 and variance 1 under their uniform law."""
  c = np.asarray(COUNTS, np.float64)
  return (f - (c - 1) / 2) / np.sqrt((c ** 2 - 1) / 12)


def code(kind: str = 'factors'):
  """represent(factors) -> codes [n, 5]: the standardised factors and 2 N(0, 1) noise dims
  ('factors'); those 5 dims rotated ('rotated'); factor 2's dim replaced by noise ('ignore2')."""
  def represent(f):
    rng = np.random.default_rng(int(f.sum()) + len(f))  # noise: a function of the rows
    z = np.concatenate([standardised(f.astype(np.float64)), rng.standard_normal((len(f), 2))], 1)
    if kind == 'rotated':
      z = z @ ROTATION
    if kind == 'ignore2':
      z[:, 2] = rng.standard_normal(len(f))
    return z
  return represent


def scores(kind: str, metric: str) -> dict:
  return dm.COMPUTE[metric](code(kind), COUNTS, np.random.default_rng(0), **SMALL[metric])


def train_test(kind: str, n_train: int = 1000, n_test: int = 500):
  rep = code(kind)
  return (*dm.factor_codes(rep, COUNTS, np.random.default_rng(1), n_train),
          *dm.factor_codes(rep, COUNTS, np.random.default_rng(2), n_test))


# --- 1. the factors themselves score near the maximum ------------------------------------------

@pytest.mark.quick
def test_the_factors_themselves_score_near_the_maximum():
  """Maxima: accuracies, AUCs and MIG 1; SAP 1 - mean(1 / count) = 0.794 here (the other dims
  are classified at chance); DCI D and C just under 1 (the linear classifier puts small weights
  on uninformative dims, which the entropy counts); modularity per factor dim 1."""
  assert scores('factors', 'beta_vae') == {'beta_vae_train_accuracy': 1.0,
                                           'beta_vae_eval_accuracy': 1.0}
  assert scores('factors', 'factor_vae') == {'factor_vae_train_accuracy': 1.0,
                                             'factor_vae_eval_accuracy': 1.0,
                                             'factor_vae_active_dims': 5.0}
  assert scores('factors', 'mig')['mig'] > 0.95
  dci = scores('factors', 'dci')
  assert dci['dci_disentanglement'] > 0.9 and dci['dci_completeness'] > 0.9
  assert dci['dci_informativeness_train'] == dci['dci_informativeness_test'] == 1.0
  ceiling = 1 - np.mean([1 / c for c in COUNTS])
  assert ceiling - 0.05 < scores('factors', 'sap')['sap'] <= ceiling + 0.02
  mod = scores('factors', 'modularity')
  assert mod['explicitness_train'] == pytest.approx(1.0) and mod['explicitness_test'] > 0.999
  z, f, _, _ = train_test('factors')
  per_code = dm.modularity_per_code(dm.mutual_info_matrix(dm.discretize(z), f))
  assert per_code[:K].min() > 0.98          # each factor dim carries one factor only
  assert per_code[K:].max() < 0.7           # noise dims: similar small MI with every factor
  assert dm.modularity(z[:, :K], f) > 0.98  # without the noise dims, ~1
  unsup = scores('factors', 'unsupervised')
  assert unsup['gaussian_total_correlation'] < 0.02  # independent dims: ~0
  assert unsup['gaussian_wasserstein_correlation_norm'] < 0.01
  assert unsup['mutual_info_score'] < 0.06           # the histogram estimator's bias only


# --- 2. a rotation keeps the information and loses the alignment -------------------------------

@pytest.mark.quick
def test_a_rotation_scores_low_and_keeps_informativeness():
  assert scores('rotated', 'mig')['mig'] < 0.3                      # factors: 0.99
  dci = scores('rotated', 'dci')
  assert dci['dci_disentanglement'] < 0.4 and dci['dci_completeness'] < 0.4   # factors: > 0.9
  assert dci['dci_informativeness_test'] > 0.97                     # still linearly readable
  assert scores('rotated', 'sap')['sap'] < 0.2                      # factors: 0.78
  assert scores('rotated', 'modularity')['explicitness_test'] > 0.99
  assert scores('rotated', 'unsupervised')['mutual_info_score'] > 0.1  # dims now dependent


# --- 3. a code that ignores a factor loses that factor's share ----------------------------------

@pytest.mark.quick
def test_a_code_that_ignores_a_factor_loses_its_share():
  z, f, zt, ft = train_test('ignore2', 2000, 1000)
  full = dm.mig(*train_test('factors', 2000)[:2])
  terms = dm.mig(z, f)
  assert terms[2] < 0.03 and terms[:2].min() > 0.95 and full.min() > 0.95
  assert np.mean(terms) == pytest.approx(np.mean(full) * (K - 1) / K, abs=0.02)
  _, train_acc, test_acc = dm.dci_importance(z, f, zt, ft)
  assert test_acc[:2].min() == 1.0
  assert test_acc[2] < 1 / COUNTS[2] + 0.06  # chance: 1/6
  auc_train, auc_test = dm.explicitness(z, f, zt, ft)
  assert auc_test[:2].min() > 0.999 and auc_test[2] < 0.6  # chance: 0.5
  sap = dm.sap_score_matrix(z, f, zt, ft)
  assert np.sort(sap[:, 2])[-1] - np.sort(sap[:, 2])[-2] < 0.06   # no dim stands out for it
  assert scores('ignore2', 'sap')['sap'] == pytest.approx(
      scores('factors', 'sap')['sap'] * (K - 1) / K, abs=0.06)


# --- 4. hand computations ----------------------------------------------------------------------

@pytest.mark.quick
def test_mutual_information_and_mig_by_hand():
  """Six points: factor f = 0 0 1 1 2 2 (H = ln 3), factor g = 0 1 0 1 0 1 (H = ln 2); code dim
  0 = f, dim 1 = [f == 2]. I(d0; f) = ln 3, I(d1; f) = H(1/3) = ln 3 - 2/3 ln 2, g is
  independent of both dims: MIG terms (2/3 ln 2) / ln 3 and 0."""
  f, g = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 0, 1, 0, 1])
  codes = np.stack([f, f == 2], 1).astype(np.float64)
  factors = np.stack([f, g], 1)
  assert dm.entropy(f) == pytest.approx(math.log(3)) and dm.entropy(g) == pytest.approx(
      math.log(2))
  mi = dm.mutual_info_matrix(dm.discretize(codes), factors)
  np.testing.assert_allclose(mi, [[math.log(3), 0], [math.log(3) - 2 / 3 * math.log(2), 0]],
                             atol=1e-12)
  terms = dm.mig(codes, factors)
  np.testing.assert_allclose(terms, [2 / 3 * math.log(2) / math.log(3), 0.0], atol=1e-12)
  assert dm.mutual_info(f, f) == pytest.approx(dm.entropy(f))
  assert dm.mutual_info([0, 0, 1, 1], [5, 5, 7, 7]) == pytest.approx(math.log(2))


@pytest.mark.quick
def test_discretize_is_the_histogram_discretizer():
  """4 bins over [0, 10]: left edges 0, 2.5, 5, 7.5; the maximum lands in the last bin."""
  z = np.array([[0.0], [0.5], [2.5], [7.4], [10.0]])
  assert dm.discretize(z, 4)[:, 0].tolist() == [1, 1, 2, 3, 4]
  assert dm.discretize(np.ones((3, 1)), 20)[:, 0].tolist() == [11, 11, 11]  # one bin


@pytest.mark.quick
def test_sap_gap_factor_vae_votes_and_modularity_by_hand():
  assert dm.sap_gap([[0.9, 0.2], [0.5, 0.3], [0.1, 0.8]]) == pytest.approx((0.4 + 0.5) / 2)
  assert dm.sap_gap([[0.7, 0.4]]) == pytest.approx(0.55)  # one dim: its scores
  # dims vote for (factor 0, 1, 1); train 12 of 13 votes agree, eval 6 of 8
  train, other = dm.factor_vae_score([[5, 0, 1], [0, 4, 3]], [[2, 1, 0], [1, 2, 2]])
  assert (train, other) == (pytest.approx(12 / 13), pytest.approx(6 / 8))
  # dim 0 informs on factor 0 only (1), dim 1 equally on both (0), dim 2 on none (0)
  np.testing.assert_allclose(dm.modularity_per_code([[1, 0], [1, 1], [0, 0]]), [1, 0, 0])
  np.testing.assert_allclose(dm.modularity_per_code([[2, 1, 0]]), [1 - 1 / (4 * 2)])
  np.testing.assert_allclose(dm.mig_per_factor([[0.5, 0.2], [0.1, 0.2]], [1.0, 0.0]), [0.4, 0])


@pytest.mark.quick
def test_dci_disentanglement_and_completeness_by_hand():
  """Importance [[.5, .5], [1, 0]]: dim 0 spreads over both factors (D 0), dim 1 one (D 1),
  each half the importance: D = 0.5. Factor 0's column (1/3, 2/3): C = 1 - H2(1/3), weight 3/4;
  factor 1's (1, 0): C = 1, weight 1/4."""
  r = np.array([[0.5, 0.5], [1.0, 0.0]])
  assert dm.dci_disentanglement(r) == pytest.approx(0.5, abs=1e-9)
  h = -(1 / 3 * math.log2(1 / 3) + 2 / 3 * math.log2(2 / 3))
  assert dm.dci_completeness(r) == pytest.approx(0.75 * (1 - h) + 0.25, abs=1e-9)
  assert dm.dci_disentanglement(np.eye(3)) == pytest.approx(1.0, abs=1e-8)
  assert dm.dci_completeness(np.ones((4, 2))) == pytest.approx(0.0, abs=1e-9)
  assert dm.dci_disentanglement(np.zeros((2, 2))) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.quick
def test_roc_auc_by_hand_with_ties():
  """Positives 0.9, 0.4, 0.6 against negatives 0.4, 0.2: 5 pairs won, one tied: 5.5 / 6."""
  scores_ = np.array([0.9, 0.4, 0.4, 0.6, 0.2])
  positive = np.array([True, True, False, True, False])
  assert dm.roc_auc(positive, scores_) == pytest.approx(5.5 / 6)
  assert dm.roc_auc(positive, -scores_) == pytest.approx(0.5 / 6)
  assert dm.roc_auc([True, False], [1.0, 1.0]) == 0.5


@pytest.mark.quick
def test_gaussian_correlations_of_a_2x2_covariance():
  """Correlation 0.6: total correlation -1/2 ln(1 - 0.36); the Wasserstein one against scipy's
  sqrtm as disentanglement_lib computes it; a constant dim adds nothing."""
  cov = np.array([[4.0, 1.2], [1.2, 1.0]])
  assert dm.gaussian_total_correlation(cov) == pytest.approx(-0.5 * math.log(0.64))
  want = 2 * np.trace(cov) - 2 * np.trace(linalg.sqrtm(cov * np.diag(cov)[:, None])).real
  assert dm.gaussian_wasserstein_correlation(cov) == pytest.approx(want, rel=1e-9)
  assert dm.gaussian_total_correlation(np.diag([2.0, 3.0])) == pytest.approx(0.0, abs=1e-12)
  padded = np.zeros((3, 3))
  padded[:2, :2] = cov
  assert dm.gaussian_total_correlation(padded) == pytest.approx(-0.5 * math.log(0.64))
  assert np.isfinite(dm.gaussian_total_correlation([[1.0, 1.0], [1.0, 1.0]]))  # dependent dims


@pytest.mark.quick
def test_logistic_regression_fits_and_balances():
  x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
  model = dm.fit_logistic(x, [0, 0, 1, 1, 2, 2])
  assert model.predict(x).tolist() == [0, 0, 1, 1, 2, 2]  # three intervals of one dim
  np.testing.assert_allclose(model.proba(x).sum(1), 1.0)
  assert dm.fit_logistic(x, [3] * 6).predict(x).tolist() == [3] * 6  # one class
  # class 0: 8 rows at 0 and 2 at 1; class 1: 1 row at 1. At 1, class 0 wins 2 to 1 unweighted;
  # balanced (weights 11/20 and 11/2), class 1 wins 5.5 to 1.1
  x2, y2 = np.r_[np.zeros(8), np.ones(3)][:, None], np.r_[np.zeros(10, int), 1]
  assert dm.fit_logistic(x2, y2).predict([[0.0], [1.0]]).tolist() == [0, 0]
  assert dm.fit_logistic(x2, y2, balanced=True).predict([[0.0], [1.0]]).tolist() == [0, 1]


@pytest.mark.quick
def test_sampling_holds_the_factor_fixed():
  rng = np.random.default_rng(3)
  f = dm.sample_factors(rng, COUNTS, 5000)
  assert f.dtype == np.int32 and (f.min(0) == 0).all()
  assert (f.max(0) == np.subtract(COUNTS, 1)).all()
  seen = []
  feats, labels = dm.beta_vae_points(lambda rows: seen.append(rows) or rows.astype(float),
                                     COUNTS, rng, 8, 20)
  rows = np.concatenate(seen)
  first, second = np.split(rows, 2)
  first, second = first.reshape(20, 8, K), second.reshape(20, 8, K)
  assert all((first[p, :, labels[p]] == second[p, :, labels[p]]).all() for p in range(20))
  assert (feats[np.arange(20), labels] == 0).all()  # the identity code: no difference there


@pytest.mark.quick
def test_degenerate_input_gives_one_line_errors_or_finite_figures():
  assert 'no points' in one_line_error(dm.mig, np.zeros((0, 3)), np.zeros((0, 2), int))
  assert 'number of points must be an integer >= 1' in one_line_error(
      dm.compute_dci, code(), COUNTS, np.random.default_rng(0), num_train=0)
  with pytest.raises(dm.NonFiniteCodes, match='not finite'):
    dm.compute_mig(lambda f: np.full((len(f), 2), np.nan), COUNTS, np.random.default_rng(0),
                   num_train=10)
  assert 'one row per code' in one_line_error(dm.mig, np.zeros((3, 2)), np.zeros((4, 1), int))
  # fewer points than classes, a constant code, a single point: finite
  few = dm.compute_dci(code(), COUNTS, np.random.default_rng(0), num_train=3, num_test=2)
  assert all(np.isfinite(v) for v in few.values())
  const = lambda f: np.zeros((len(f), 3))  # noqa: E731
  for metric in ('mig', 'dci', 'sap', 'modularity', 'unsupervised', 'factor_vae'):
    out = dm.COMPUTE[metric](const, COUNTS, np.random.default_rng(0), **SMALL[metric])
    assert all(np.isfinite(v) for v in out.values()), (metric, out)
  assert dm.compute_factor_vae(const, COUNTS, np.random.default_rng(0), **SMALL['factor_vae'])[
      'factor_vae_active_dims'] == 0
  assert dm.compute_mig(const, COUNTS, np.random.default_rng(0), num_train=10)['mig'] == 0.0


# --- the evaluator -----------------------------------------------------------------------------

MAP = np.concatenate([np.eye(K), -2 * np.eye(K), np.ones((K, 2))], 1).astype(np.float32)
BACK = np.eye(8, K, dtype=np.float32)  # the first 3 features: the factor values, exactly


def observe(f: np.ndarray) -> np.ndarray:
  """A fixed linear map of the factor values into 8 features (exact in float32: codes on the
  discretizer's bin edges stay on them)."""
  return (np.asarray(f, np.float32) @ MAP).astype(np.float32)


class FakeForward:
  """Forward.encode's signature: the code of raw rows x is x @ params['w']."""

  def encode(self, params, prep, x):
    return jnp.asarray(x) @ params['w']


def context(tmp_path, factors=True) -> Context:
  split = Split(np.zeros((4, 8), np.float32), None)
  dataset = Dataset(name='toy_factors', train=split, val=split, test=split, feature_shape=(8,),
                    value_range=None, feature_names=None, num_classes=None, source={},
                    factors=Factors(('a', 'b', 'c'), COUNTS, observe) if factors else None)
  return Context(config=None, dataset=dataset, forward=FakeForward(), mesh=None,
                 unit_interval=False, workdir=tmp_path)


def tiny_options(**extra) -> dict:
  opts = {f'{m}_{k}': v for m, args in SMALL.items() for k, v in args.items()}
  return {'type': 'disentanglement', **opts, 'batch_size': 128, **extra}


@pytest.mark.quick
def test_the_evaluator_scores_a_disentangled_and_an_entangled_code(tmp_path):
  """Codes = the rows' first 3 features (the factor values), and a code that mixes them
  (a rotation): through Factors.observe, the evaluator's batches and the fake forward pass."""
  ctx = context(tmp_path)
  evaluator, = build({'dis': tiny_options()}, ctx)
  assert evaluator.split == 'test' and evaluator.every == 0
  state = types.SimpleNamespace(params={'w': jnp.asarray(BACK)}, step=jnp.asarray(7))
  good = evaluator.run(state, None)
  assert set(good) == {k for keys in dm.KEYS.values() for k in keys}
  assert good['beta_vae_eval_accuracy'] > 0.99 and good['factor_vae_eval_accuracy'] > 0.99
  assert good['mig'] > 0.95 and good['dci_disentanglement'] > 0.9  # 0.94: see test 1
  assert good['explicitness_test'] > 0.99 and good['modularity'] > 0.95
  written = json.loads((tmp_path / 'disentanglement_test.json').read_text())
  assert written['step'] == 7 and written['mig'] == good['mig']
  assert (tmp_path / 'plots' / 'factor_response.png').stat().st_size > 1000
  assert written['arguments']['mig'] == {'num_train': 2000, 'num_bins': 20}
  mixed = types.SimpleNamespace(params={'w': jnp.asarray(BACK @ ROTATION3)},
                                step=jnp.asarray(8))
  bad = evaluator.run(mixed, None)
  assert bad['mig'] < good['mig'] - 0.5 and bad['dci_disentanglement'] < 0.5
  assert bad['dci_informativeness_test'] > 0.97
  # each metric has its own stream: a metric alone gives the same figures
  alone, = build({'dis': tiny_options(metrics=('mig',))}, ctx)
  assert alone.run(state, None) == {'mig': good['mig']}


@pytest.mark.quick
def test_the_evaluator_gives_nan_for_a_diverged_model(tmp_path):
  evaluator, = build({'dis': tiny_options(metrics=('mig', 'sap'))}, context(tmp_path))
  state = types.SimpleNamespace(params={'w': jnp.full((8, 2), jnp.nan)}, step=jnp.asarray(0))
  out = evaluator.run(state, None)
  assert set(out) == {'mig', 'sap'} and all(math.isnan(v) for v in out.values())


@pytest.mark.quick
def test_the_evaluator_errors_are_one_line(tmp_path):
  ctx = context(tmp_path)
  message = one_line_error(build, {'dis': tiny_options()}, context(tmp_path, factors=False))
  assert 'known factors of variation' in message and "'toy_factors' has none" in message
  message = one_line_error(build, {'dis': tiny_options(metrics=('mig', 'betavae'))}, ctx)
  assert "unknown disentanglement metric 'betavae'" in message and 'beta_vae' in message
  assert 'mig_num_train' in one_line_error(build, {'dis': tiny_options(mig_num_train=0)}, ctx)
  assert 'mig_num_tran' in one_line_error(build, {'dis': tiny_options(mig_num_tran=5)}, ctx)
  assert disentanglement.chosen('mig') == ('mig',)


@pytest.mark.quick
def test_the_options_default_to_disentanglement_libs_counts():
  o = disentanglement.OPTIONS
  assert (o['beta_vae_batch_size'], o['beta_vae_num_train'], o['beta_vae_num_eval']) == (
      64, 10000, 5000)
  assert (o['factor_vae_num_variance_estimate'], o['factor_vae_batch_size'],
          o['factor_vae_num_train'], o['factor_vae_num_eval'],
          o['factor_vae_threshold']) == (10000, 64, 10000, 5000, 0.05)
  assert o['mig_num_train'] == o['unsupervised_num_train'] == 10000 and o['num_bins'] == 20
  for m in ('dci', 'sap', 'modularity'):
    assert (o[f'{m}_num_train'], o[f'{m}_num_test']) == (10000, 5000)
  assert o['metrics'] == dm.METRICS
  assert disentanglement.ARGUMENTS['factor_vae'] == (
      'batch_size', 'num_train', 'num_eval', 'num_variance_estimate', 'threshold')


@pytest.mark.quick
def test_sprites_factors_observe_renders_the_factor_indices():
  from aelab import data
  from aelab.data import sprites
  ds = data.load({'name': 'sprites32', 'train_preview': 4, 'val_rows': 4, 'test_rows': 4}, 0)
  assert ds.factors.names == sprites.FACTORS and ds.factors.counts == (3, 6, 40, 32, 32)
  f = dm.sample_factors(np.random.default_rng(0), ds.factors.counts, 5)
  x = ds.factors.observe(f)
  assert x.shape == (5, 32, 32, 1) and x.dtype == np.float32
  np.testing.assert_array_equal(x, np.asarray(jax.jit(sprites.render, static_argnums=1)(f, 32)))
  np.testing.assert_array_equal(ds.factors.observe(ds.test.truth_codes.astype(np.int32)),
                                ds.test.x)
  assert 'out of range' in one_line_error(ds.factors.observe, np.array([[3, 0, 0, 0, 0]]))
