"""Tests for aelab.preprocessing: formulas, round trips, constant features, jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import preprocessing
from aelab.errors import AelabError

pytestmark = pytest.mark.quick  # the fast tier: python -m pytest -m quick


def _table(n: int = 200, seed: int = 0) -> np.ndarray:
  """Columns on wildly different scales and offsets, float32."""
  rng = np.random.default_rng(seed)
  scales = np.array([1e-3, 1.0, 50.0, 1e3, 1e4], np.float64)
  offsets = np.array([0.0, -3.0, 100.0, 5e3, -2e4], np.float64)
  return (rng.normal(size=(n, 5)) * scales + offsets).astype(np.float32)


@pytest.mark.parametrize('mode', preprocessing.MODES)
def test_round_trip(mode):
  x = _table()
  stats = preprocessing.fit(mode, x)
  z, ctx = preprocessing.apply(mode, stats, x)
  back = np.asarray(preprocessing.invert(mode, stats, z, ctx))
  assert back.shape == x.shape
  # Relative to the scale the transform works at: a column's (or, for
  # per_sample, a row's) largest magnitude.
  axis = 1 if mode == 'per_sample' else 0
  scale = np.max(np.abs(x), axis=axis, keepdims=True)
  assert np.all(np.abs(back - x) <= 1e-5 * scale)


@pytest.mark.parametrize('mode', preprocessing.MODES)
def test_round_trip_on_new_data_and_images(mode):
  rng = np.random.default_rng(1)
  train = rng.uniform(0, 255, size=(64, 4, 4, 1)).astype(np.float32)
  test = rng.uniform(0, 255, size=(8, 4, 4, 1)).astype(np.float32)
  stats = preprocessing.fit(mode, train)
  for v in stats.values():
    assert v.shape == (4, 4, 1)
  z, ctx = preprocessing.apply(mode, stats, jnp.asarray(test))
  back = np.asarray(preprocessing.invert(mode, stats, z, ctx))
  np.testing.assert_allclose(back, test, rtol=1e-5, atol=1e-5 * 255)


@pytest.mark.parametrize('mode', preprocessing.MODES)
def test_stats_are_float32_and_shaped_like_a_feature(mode):
  x = _table().astype(np.float64)
  stats = preprocessing.fit(mode, x)
  assert set(stats) == set(preprocessing.STAT_KEYS[mode])
  for v in stats.values():
    assert isinstance(v, np.ndarray)
    assert v.dtype == np.float32
    assert v.shape == (5,)


def test_none_is_identity():
  x = _table()
  assert preprocessing.fit('none', x) == {}
  z, ctx = preprocessing.apply('none', {}, x)
  assert ctx == {}
  np.testing.assert_array_equal(np.asarray(z), x)


def test_minmax_maps_training_data_to_exactly_half_interval():
  x = _table()
  stats = preprocessing.fit('minmax', x)
  z, ctx = preprocessing.apply('minmax', stats, x)
  z = np.asarray(z)
  assert ctx == {}
  np.testing.assert_array_equal(z.min(axis=0), np.full(5, -0.5, np.float32))
  np.testing.assert_array_equal(z.max(axis=0), np.full(5, 0.5, np.float32))
  # Also under jit, where XLA would turn the division into a reciprocal.
  z_jit = np.asarray(jax.jit(
      lambda s, x: preprocessing.apply('minmax', s, x)[0])(stats, x))
  np.testing.assert_array_equal(z_jit, z)
  x64 = x.astype(np.float64)
  np.testing.assert_allclose(stats['min'], x64.min(0), rtol=1e-7)
  np.testing.assert_allclose(stats['range'], x64.max(0) - x64.min(0), rtol=1e-6)


def test_minmax_constant_column_has_range_one():
  x = _table()
  x[:, 2] = 7.25
  stats = preprocessing.fit('minmax', x)
  assert stats['range'][2] == 1.0
  z, _ = preprocessing.apply('minmax', stats, x)
  np.testing.assert_array_equal(np.asarray(z)[:, 2], -0.5)


def test_h2o_matches_hand_formula():
  x = _table()
  stats = preprocessing.fit('h2o', x)
  z, ctx = preprocessing.apply('h2o', stats, x)
  assert ctx == {}
  x64 = x.astype(np.float64)
  expected = (x64 - x64.mean(0)) / (x64.max(0) - x64.min(0))
  np.testing.assert_allclose(np.asarray(z), expected, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(stats['mean'], x64.mean(0), rtol=1e-6)
  np.testing.assert_allclose(
      stats['mul'], 1.0 / (x64.max(0) - x64.min(0)), rtol=1e-6)


def test_h2o_constant_column():
  x = _table()
  x[:, 1] = 0.1  # Not exactly representable: the mean must still cancel.
  stats = preprocessing.fit('h2o', x)
  assert stats['mul'][1] == 1.0
  z, _ = preprocessing.apply('h2o', stats, x)
  z = np.asarray(z)
  np.testing.assert_array_equal(z[:, 1], x[:, 1] - stats['mean'][1])
  np.testing.assert_array_equal(z[:, 1], 0.0)
  # The other columns are unaffected by the constant one.
  assert np.all(stats['mul'][[0, 2, 3, 4]] != 1.0)


def test_h2o_differs_from_minmax():
  """The classic confusion: H2O does not scale to [-0.5, 0.5]."""
  x = _table()
  z_h2o = np.asarray(preprocessing.apply(
      'h2o', preprocessing.fit('h2o', x), x)[0])
  z_mm = np.asarray(preprocessing.apply(
      'minmax', preprocessing.fit('minmax', x), x)[0])
  # Same spread (both divide by max - min) but a different centre: the shift
  # between them is 0.5 - (mean - min) / (max - min), per column.
  x64 = x.astype(np.float64)
  shift = 0.5 - (x64.mean(0) - x64.min(0)) / (x64.max(0) - x64.min(0))
  np.testing.assert_allclose(z_h2o - z_mm, np.broadcast_to(shift, x.shape),
                             atol=1e-5)
  assert np.min(np.abs(shift)) > 1e-3
  assert np.max(np.abs(z_h2o - z_mm)) > 1e-2
  # H2O's output is centred (column mean 0), minmax's generally is not.
  np.testing.assert_allclose(z_h2o.mean(0), 0.0, atol=1e-6)
  assert np.all(np.abs(z_mm.mean(0)) > 1e-3)


def test_standardize_gives_zero_mean_unit_std():
  x = _table()
  x[:, 4] = -3.5
  stats = preprocessing.fit('standardize', x)
  assert stats['std'][4] == 1.0
  z = np.asarray(preprocessing.apply('standardize', stats, x)[0], np.float64)
  np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(z[:, :4].std(0), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(z[:, 4], 0.0)


def test_per_sample_rows_have_zero_mean_unit_std_and_invert():
  # The "won't learn the identity" data: 84 features ~ N(1.109, 0.00124).
  rng = np.random.default_rng(2)
  x = rng.normal(1.1090579, 0.0012380764, size=(32, 84)).astype(np.float32)
  x[3] = 2.0  # A constant example.
  assert preprocessing.fit('per_sample', x) == {}
  z, ctx = preprocessing.apply('per_sample', {}, x)
  z = np.asarray(z, np.float64)
  assert ctx['mean'].shape == (32, 1) and ctx['std'].shape == (32, 1)
  rows = np.arange(32) != 3
  # Row means are 0 up to where float32 can put the mean: half an ulp of 1.109
  # over a std of 0.00124 is 4.8e-5 (one pass of float32 sums gave 1.8e-4).
  limit = 0.5 * np.spacing(np.float32(1.109)) / 0.0012380764
  np.testing.assert_allclose(z[rows].mean(1), 0.0, atol=1.2 * limit)
  np.testing.assert_allclose(z[rows].std(1), 1.0, rtol=1e-4)
  np.testing.assert_array_equal(z[3], 0.0)
  assert float(ctx['std'][3, 0]) == 1.0
  x64 = x.astype(np.float64)
  np.testing.assert_allclose(
      np.asarray(ctx['mean'])[:, 0], x64.mean(1), rtol=1e-6)
  np.testing.assert_allclose(
      np.asarray(ctx['std'])[rows, 0], x64[rows].std(1), rtol=1e-4)
  back = np.asarray(preprocessing.invert('per_sample', {}, z, ctx))
  np.testing.assert_allclose(back, x, rtol=1e-6)


def test_per_sample_on_images_reduces_over_all_features():
  rng = np.random.default_rng(3)
  x = rng.uniform(size=(6, 5, 5, 2)).astype(np.float32) * np.arange(
      1, 7, dtype=np.float32)[:, None, None, None]
  z, ctx = preprocessing.apply('per_sample', {}, x)
  assert ctx['mean'].shape == (6, 1, 1, 1)
  z = np.asarray(z, np.float64).reshape(6, -1)
  np.testing.assert_allclose(z.mean(1), 0.0, atol=1e-5)
  np.testing.assert_allclose(z.std(1), 1.0, rtol=1e-5)


@pytest.mark.parametrize('mode', preprocessing.MODES)
def test_apply_and_invert_inside_jit(mode):
  x = _table()
  stats = preprocessing.fit(mode, x)

  @jax.jit
  def round_trip(stats, x):
    z, ctx = preprocessing.apply(mode, stats, x)
    return z, preprocessing.invert(mode, stats, z, ctx)

  z_jit, back = round_trip(stats, jnp.asarray(x))
  z_eager, _ = preprocessing.apply(mode, stats, x)
  np.testing.assert_allclose(np.asarray(z_jit), np.asarray(z_eager),
                             rtol=1e-6, atol=1e-6)
  scale = np.max(np.abs(x))
  np.testing.assert_allclose(np.asarray(back), x, atol=1e-5 * scale)


def test_unknown_mode_lists_valid_modes():
  for call in (lambda: preprocessing.check_mode('zscore'),
               lambda: preprocessing.fit('zscore', _table()),
               lambda: preprocessing.apply('zscore', {}, _table()),
               lambda: preprocessing.invert('zscore', {}, _table(), {}),
               lambda: preprocessing.describe('zscore', {})):
    with pytest.raises(AelabError) as err:
      call()
    msg = str(err.value)
    assert 'zscore' in msg
    for mode in preprocessing.MODES:
      assert mode in msg


def test_stats_of_another_mode_or_shape_are_rejected():
  x = _table()
  with pytest.raises(AelabError, match='mul'):
    preprocessing.apply('h2o', preprocessing.fit('minmax', x), x)
  with pytest.raises(AelabError, match='shape'):
    preprocessing.apply('h2o', preprocessing.fit('h2o', x), x[:, :3])


def test_fit_rejects_nan_and_bad_shapes():
  x = _table()
  x[4, 2] = np.nan
  with pytest.raises(AelabError, match='NaN'):
    preprocessing.fit('standardize', x)
  with pytest.raises(AelabError, match='N, '):
    preprocessing.fit('minmax', np.arange(5.0))


def test_describe_names_the_stats():
  assert preprocessing.describe('none', {}) == 'z = x'
  assert preprocessing.describe('h2o', {}).startswith('z = (x - mean) * mul')
  assert preprocessing.describe('minmax', {}).startswith(
      'z = (x - min) / range - 0.5')
  assert preprocessing.describe('standardize', {}).startswith(
      'z = (x - mean) / std')
  x = _table()
  for mode in preprocessing.MODES:
    line = preprocessing.describe(mode, preprocessing.fit(mode, x))
    assert '\n' not in line
    for key in preprocessing.STAT_KEYS[mode]:
      assert key in line
