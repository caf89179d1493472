"""The SynthSAEBench-like source (aelab/data/synth_features.py), measured on ~100k rows of reduced
configurations: the firing law, the hierarchy, the copula's low rank, the mean L0, magnitudes,
directions, determinism, and the Dataset that load() returns."""

from __future__ import annotations

import hashlib
from statistics import NormalDist

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import data
from aelab.data import synth_features as sf
from aelab.errors import AelabError

# synth_sae reduced to 1024 features in 64 dims with 2 roots (a forest of 2 * 85 = 170 features,
# 3 levels below the roots): 854 features without a parent, ranks 171 .. 1024 of the Zipf law.
SMALL = {**sf.SOURCES['synth_sae'], 'num_features': 1024, 'dims': 64, 'hierarchy_roots': 2}
ROWS = 98 * 1024  # ~100k


def levels(arrays) -> list[tuple[np.ndarray, np.ndarray]]:
  """The forest's (children [G, B], parents [G]) per level."""
  out, level = [], 1
  while f'children_{level}' in arrays:
    out.append((np.asarray(arrays[f'children_{level}']), np.asarray(arrays[f'parents_{level}'])))
    level += 1
  return out


def statistics(arrays, seed: int, batches: int = 98) -> dict:
  """Sums over `batches` x 1024 rows: per-feature firing counts and magnitude sums, the rows'
  L0, the (row, sibling group) pairs with more than one child firing and the (row, child) pairs
  where a child fires without its parent."""
  tree = levels(arrays)

  @jax.jit
  def batch(arr, key):
    _, codes = sf.sample(arr, key, 1024)
    active = codes > 0
    together = sum((active[:, c].sum(-1) > 1).sum() for c, _ in tree)
    orphans = sum((active[:, c] & ~active[:, p][..., None]).sum() for c, p in tree)
    return active.sum(0), codes.sum(0), together, orphans

  device = jax.device_put(arrays)
  out = {'count': 0, 'magnitude': 0, 'together': 0, 'orphans': 0, 'rows': batches * 1024}
  for i in range(batches):
    count, magnitude, together, orphans = batch(device, jax.random.fold_in(
        jax.random.PRNGKey(seed), i))
    out['count'] = out['count'] + np.asarray(count, np.int64)
    out['magnitude'] = out['magnitude'] + np.asarray(magnitude, np.float64)
    out['together'] += int(together)
    out['orphans'] += int(orphans)
  out['frequency'] = out['count'] / out['rows']
  return out


@pytest.fixture(scope='module')
def small():
  """(arrays, statistics) of SMALL, seed 0, over ~100k rows."""
  arrays = sf.make(sf.check(SMALL), 0)
  return arrays, statistics(arrays, seed=1)


def test_firing_follows_the_zipf_law(small):
  """Features without a parent (the 2 roots and ranks 171 .. 1024) are drawn with exactly their
  Zipf probability p_r = p_min + (p_max - p_min) (r^-a - n^-a) / (1 - n^-a) and kept with the
  relu's Phi(mu / s) (0.999 on average). Undoing both on the measured frequencies of those with
  p_r >= 0.005 (>= 500 firings; the roots and ranks 171 .. 500) gives r^-a, whose log-log slope
  against rank is -a: measured a = 0.500 +- 0.01. The most frequent feature fires 0.4 of the
  time, the rarest near 5e-4; the scatter around the prediction is binomial. Children are
  checked against the hierarchy-corrected prediction (expected_frequencies) in aggregate."""
  arrays, st = small
  n, a, high, low = 1024, SMALL['zipf_exponent'], SMALL['max_probability'], \
      SMALL['min_probability']
  free = np.flatnonzero(arrays['parent'] < 0)
  fit = free[arrays['probability'][free] >= 0.005]
  drawn = st['frequency'][fit] / sf._kept(arrays)[fit]
  power = (drawn - low) / (high - low) * (1 - n ** -a) + n ** -a      # = r^-a
  slope = np.polyfit(np.log(fit + 1.0), np.log(power), 1)[0]
  assert len(fit) > 300 and -slope == pytest.approx(a, abs=0.01), slope
  expected = sf.expected_frequencies(arrays)
  z = (st['frequency'][free] - expected[free]) / np.sqrt(expected[free] / st['rows'])
  assert abs(np.mean(z ** 2) - 1.0) < 0.15, np.mean(z ** 2)     # binomial scatter, nothing more
  assert arrays['probability'][0] == pytest.approx(0.4) and \
      arrays['probability'][-1] == pytest.approx(5e-4)
  assert st['frequency'][0] == pytest.approx(expected[0], abs=0.005) and expected[0] > 0.399
  rare = free[-32:]
  assert st['count'][rare].sum() / st['rows'] / 32 == pytest.approx(expected[rare].mean(),
                                                                    rel=0.08)
  assert expected[rare].mean() < 6.1e-4
  kids = np.flatnonzero(arrays['parent'] >= 0)
  assert st['frequency'][kids].sum() == pytest.approx(expected[kids].sum(), rel=0.02)


def test_children_fire_only_with_their_parent_and_alone(small):
  """Over ~100k rows no two children of a parent fire together and no child fires without its
  parent, where the draws alone would put two or more siblings under a drawn parent in ~4M of
  the (row, sibling group) pairs."""
  arrays, st = small
  assert st['together'] == 0 and st['orphans'] == 0
  q = arrays['draw_probability'].astype(np.float64)
  would = 0.0
  for children, parents in levels(arrays):
    p = q[children]
    none = np.prod(1 - p, 1)
    one = sum(p[:, i] * np.prod(np.delete(1 - p, i, 1), 1) for i in range(p.shape[1]))
    would += ((1 - none - one) * q[parents]).sum() * st['rows']
  assert would > 1000, would


def test_firing_correlation_has_the_configured_low_rank():
  """512 features without a hierarchy (p 0.4 .. 0.05), copula rank 4 at scale 0.15. The
  correlation matrix of the firing indicators over 64k rows has 4 large eigenvalues, those
  predicted by the copula to first order (1 + the eigenvalues of G^T G, G = diag(phi(t_i) /
  sqrt(p_i (1 - p_i))) F), within 5%, along the predicted directions (principal cosines > 0.99),
  then a drop (the fifth is the copula's second-order term, below 1.6). With correlation_scale 0
  the largest eigenvalue sits at the Marchenko-Pastur edge of independent noise (1.18)."""
  config = {**sf.SOURCES['synth_sae'], 'num_features': 512, 'dims': 16, 'hierarchy_roots': 0,
            'min_probability': 0.05, 'correlation_rank': 4, 'correlation_scale': 0.15,
            'orthogonalize_steps': 0}

  def spectrum(fields):
    arrays = sf.make(sf.check(fields), 0)

    @jax.jit
    def batch(arr, key):
      fires = (sf.sample(arr, key, 1024)[1] > 0).astype(jnp.float32)
      return fires.sum(0), fires.T @ fires

    device, first, second, rows = jax.device_put(arrays), 0.0, 0.0, 64 * 1024
    for i in range(64):
      s1, s2 = batch(device, jax.random.fold_in(jax.random.PRNGKey(3), i))
      first, second = first + np.asarray(s1, np.float64), second + np.asarray(s2, np.float64)
    mean = first / rows
    cov = second / rows - np.outer(mean, mean)
    sd = np.sqrt(np.diag(cov))
    values, vectors = np.linalg.eigh(cov / np.outer(sd, sd))
    return arrays, values[::-1], vectors[:, ::-1]

  arrays, values, vectors = spectrum(config)
  p = arrays['draw_probability'].astype(np.float64) * sf._kept(arrays)
  density = np.array([NormalDist().pdf(float(t)) for t in arrays['threshold']])
  g = (density / np.sqrt(p * (1 - p)))[:, None] * arrays['correlation_factor'].astype(np.float64)
  predicted = 1 + np.linalg.eigvalsh(g.T @ g)[::-1]
  assert np.allclose(values[:4], predicted, rtol=0.05), (values[:5], predicted)
  assert values[3] > 3.0 and values[4] < 1.6, values[:6]
  basis = np.linalg.qr(g)[0]
  assert np.linalg.svd(basis.T @ vectors[:, :4], compute_uv=False).min() > 0.99
  _, independent, _ = spectrum({**config, 'correlation_scale': 0.0})
  assert independent[0] < (1 + np.sqrt(512 / (64 * 1024))) ** 2 * 1.03, independent[:3]


def test_mean_l0_is_the_predicted_one(small):
  """The mean number of active features per row equals sum_i e_i, e_i from expected_frequencies:
  draw probability x Phi(mu_i / s_i) for a feature without a parent, and for a child its parent's
  e x its own x E[1 / (1 + siblings drawn)] (exact for independent draws; the copula's small
  correlations move it by ~0.1% here). 7.77 for this configuration."""
  arrays, st = small
  predicted = sf.expected_frequencies(arrays).sum()
  assert st['count'].sum() / st['rows'] == pytest.approx(predicted, rel=0.01)
  assert predicted == pytest.approx(7.77, abs=0.01)


@pytest.mark.parametrize('name, l0', [('synth_sae', 16.04), ('synth_sae_16k', 34.49)])
def test_expected_l0_of_the_standard_models(name, l0):
  """SynthSAEBench-16k's published mean L0 is ~34: with the forest and SAELens's compensation
  the prediction is 34.5 (16.0 for the CPU-sized model). No directions are needed for it."""
  fields = sf.check({**sf.SOURCES[name], 'orthogonalize_steps': 0})
  assert sf.expected_frequencies(sf.make(fields, 0)).sum() == pytest.approx(l0, abs=0.01)


def truncated_mean(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  """E[relu(X) | X > 0], X ~ N(mean, std^2)."""
  nd = NormalDist()
  ratio = np.array([nd.pdf(m / s) / nd.cdf(m / s) if s > 0 else 0.0 for m, s in zip(mean, std)])
  return mean + std * ratio


def test_magnitudes_follow_the_configured_means(small):
  """Active magnitudes of features without a parent: the 64 most frequent average ~4.88 and the
  128 rarest ~4.06 (the linear law 5.0 -> 4.0 at their ranks, plus the relu's truncation),
  within 1% of the prediction; children (scaled by parent / parent mean) keep their own means."""
  arrays, st = small
  mean = arrays['magnitude_mean'].astype(np.float64)
  predicted = truncated_mean(mean, arrays['magnitude_std'].astype(np.float64))
  free = np.flatnonzero(arrays['parent'] < 0)
  kids = np.flatnonzero(arrays['parent'] >= 0)
  count = st['count']
  for group in (free[:64], free[-128:], kids):
    measured = st['magnitude'][group].sum() / count[group].sum()
    assert measured == pytest.approx((predicted[group] * count[group]).sum()
                                     / count[group].sum(), rel=0.01)
    assert measured == pytest.approx((mean[group] * count[group]).sum() / count[group].sum(),
                                     rel=0.02)
  weighted = lambda v, group: (v[group] * count[group]).sum() / count[group].sum()
  frequent = st['magnitude'][free[:64]].sum() / count[free[:64]].sum()
  rare = st['magnitude'][free[-128:]].sum() / count[free[-128:]].sum()
  assert frequent - rare == pytest.approx(
      weighted(mean, free[:64]) - weighted(mean, free[-128:]), abs=0.03)
  assert mean[0] == 5.0 and mean[-1] == 4.0


def digest(arrays: dict) -> str:
  """sha256 of the arrays' names, shapes and values rounded to 6 decimals (in float64, -0 as 0)."""
  h = hashlib.sha256()
  for key in sorted(arrays):
    value = np.asarray(arrays[key])
    h.update(f'{key}{value.shape}'.encode())
    h.update((np.round(value.astype(np.float64), 6) + 0.0).tobytes())
  return h.hexdigest()


@pytest.mark.quick
def test_same_seed_same_arrays_and_rows():
  """make() for seed 0 and one sample batch from PRNGKey(0) hash to fixed values on every machine.
  make() computes in float64 (the values are hashed to 6 decimals, far above any BLAS's last
  bit); the batch's codes are elementwise (hashed to 4 decimals) and x = codes @ directions +
  bias is checked to 1e-4 instead of hashed, since a matmul's last bits depend on the CPU. The
  batch is drawn on the CPU, also where jax has an accelerator."""
  arrays = sf.make(sf.check(SMALL), 0)
  assert digest(arrays) == \
      '7a456826a522e6cb049a7f6717067d2e357be24b4196da519e2ef8deee4c4f6e'
  with jax.default_device(jax.devices('cpu')[0]):   # the CPU's float ops, also on a GPU host
    x, codes = jax.jit(sf.sample, static_argnums=2)(arrays, jax.random.PRNGKey(0), 8)
  x, codes = np.asarray(x), np.asarray(codes)
  assert digest({'codes': np.round(codes, 4), 'active': codes > 0}) == \
      'b38299dff9c692f6ad59fafcc5b6b251103b12f08f2f04dc2d3d1b3b29601d55'
  assert np.allclose(x, codes @ arrays['directions'] + arrays['bias'], atol=1e-4)
  assert digest(sf.make(sf.check(SMALL), 1)) != digest(arrays)


@pytest.mark.quick
def test_directions_are_unit_and_orthogonalised():
  """Unit rows; the 100 Adam steps bring the mean squared cosine from the random 0.0156 to the
  tight-frame bound (n/d - 1) / (n - 1) = 0.0147 (within 0.5%) and lower the largest |cosine|."""
  fields = sf.check(SMALL)
  ortho = sf.make(fields, 0)['directions'].astype(np.float64)
  random = sf.make({**fields, 'orthogonalize_steps': 0}, 0)['directions'].astype(np.float64)
  assert np.allclose(np.linalg.norm(ortho, axis=1), 1.0, atol=1e-6)

  def cosines(v):
    c = v @ v.T
    np.fill_diagonal(c, 0.0)
    return np.abs(c).max(), (c ** 2).sum() / (len(v) * (len(v) - 1))

  (max_random, sq_random), (max_ortho, sq_ortho) = cosines(random), cosines(ortho)
  bound = (1024 / 64 - 1) / (1024 - 1)
  assert sq_ortho == pytest.approx(bound, rel=0.005) and sq_random > 1.05 * bound
  assert max_ortho < max_random


def test_load_returns_the_stream_and_its_splits():
  """data.load: preview / val / test rows (x = truth_codes @ truth + bias), from keys distinct
  from each other and from the train steps', the stream's sample, and the source record."""
  cfg = {'name': 'synth_sae', 'num_features': 1024, 'dims': 64, 'hierarchy_roots': 2,
         'train_preview': 2048, 'val_rows': 1000, 'test_rows': 1000}
  ds = data.load(cfg, 0)
  assert ds.train.x.shape == (2048, 64) and ds.train.truth_codes is None
  assert ds.val.x.shape == (1000, 64) and ds.val.truth_codes.shape == (1000, 1024)
  assert ds.truth.shape == (1024, 64) and ds.feature_shape == (64,)
  bias = ds.stream.arrays['bias']
  for split in (ds.val, ds.test):
    assert np.allclose(split.x, split.truth_codes @ ds.truth + bias, atol=1e-4)
  step = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(0), 0x57ea), 0)
  streamed = np.asarray(jax.jit(ds.stream.sample, static_argnums=2)(ds.stream.arrays, step, 16))
  assert streamed.shape == (16, 64) and streamed.dtype == np.float32
  firsts = [ds.train.x[0], ds.val.x[0], ds.test.x[0], streamed[0]]
  assert len({row.tobytes() for row in firsts}) == 4
  assert ds.source['mean_l0_preview'] == pytest.approx(ds.source['expected_mean_l0'], rel=0.05)
  assert ds.source['seed'] == 0 and ds.source['num_features'] == 1024


@pytest.mark.quick
@pytest.mark.parametrize('field, value, message', [
    ('min_probability', 0.5, 'must be below dataset.max_probability'),
    ('hierarchy_roots', 13, 'has 1105 features but dataset.num_features is 1024'),
    ('hierarchy_branching', 1, 'dataset.hierarchy_branching'),
    ('compensate_probabilities', 1, 'set it to True or False'),
    ('correlation_scale', -0.1, 'must be >= 0'),
    ('num_features', 0, 'dataset.num_features'),
])
def test_bad_fields_are_one_line_errors(field, value, message):
  with pytest.raises(AelabError, match=message) as raised:
    data.load({**{'name': 'synth_sae', 'num_features': 1024, 'dims': 64}, field: value}, 0)
  assert '\n' not in str(raised.value)
