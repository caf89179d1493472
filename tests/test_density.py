"""The Gaussian mixture of ex-post density estimation (aelab/models/density.py): EM recovers a
known mixture, its log density is the normal's, its draws have the fitted statistics."""

import numpy as np
import pytest
from scipy import stats

from aelab.models.density import GaussianMixture
from conftest import one_line_error

MEANS = np.array([[0.0, 0.0, 0.0], [8.0, 0.0, -4.0], [0.0, 9.0, 4.0]])
WEIGHTS = np.array([0.5, 0.3, 0.2])


def mixture(n: int, seed: int = 0) -> np.ndarray:
  """n draws of a well-separated 3-component mixture with full (correlated) covariances."""
  rng = np.random.default_rng(seed)
  labels = rng.choice(3, n, p=WEIGHTS)
  mix = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.2, -0.3, 0.9]])
  return MEANS[labels] + (rng.standard_normal((n, 3)) * [1.0, 0.7, 0.5]) @ mix


def test_em_recovers_the_means_and_weights_of_a_separated_mixture():
  gmm = GaussianMixture.fit(mixture(6000), components=3, seed=0)
  order = [int(np.argmin(np.linalg.norm(gmm.means - m, axis=1))) for m in MEANS]
  assert sorted(order) == [0, 1, 2]
  np.testing.assert_allclose(gmm.means[order], MEANS, atol=0.06)
  np.testing.assert_allclose(gmm.weights[order], WEIGHTS, atol=0.02)
  assert gmm.converged and gmm.components == 3 and gmm.examples == 6000


def test_one_component_log_density_is_the_multivariate_normal():
  x = mixture(2000, seed=1)
  gmm = GaussianMixture.fit(x, components=1)
  np.testing.assert_allclose(gmm.means[0], x.mean(0), atol=1e-12)
  np.testing.assert_allclose(gmm.covariances[0], np.cov(x, rowvar=False, bias=True),
                             rtol=1e-6, atol=1e-5)
  want = stats.multivariate_normal(gmm.means[0], gmm.covariances[0]).logpdf(x[:50])
  np.testing.assert_allclose(gmm.log_density(x[:50]), want, rtol=1e-10, atol=1e-10)


def test_samples_have_the_fitted_statistics():
  x = mixture(6000, seed=2)
  gmm = GaussianMixture.fit(x, components=3, seed=0)
  z = gmm.sample(np.random.default_rng(5), 60000)
  assert z.dtype == np.float32 and z.shape == (60000, 3)
  np.testing.assert_allclose(z.mean(0), x.mean(0), atol=0.08)
  np.testing.assert_allclose(np.cov(z, rowvar=False), np.cov(x, rowvar=False), atol=0.4,
                             rtol=0.03)
  np.testing.assert_array_equal(gmm.sample(7, 10), gmm.sample(np.random.default_rng(7), 10))
  # Their log density under the mixture is that of the data (same distribution).
  assert abs(gmm.log_density(z[:5000]).mean() - gmm.log_likelihood) < 0.1


def test_few_codes_fit_fewer_components_and_dead_units_stay_positive_definite():
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.standard_normal((30, 4)), np.zeros((30, 1))], axis=1)  # a dead unit
  gmm = GaussianMixture.fit(x, components=10)
  assert gmm.components == 5  # 30 codes // (d + 1)
  assert np.isfinite(gmm.log_density(x)).all()
  assert np.isfinite(gmm.sample(0, 100)).all()


@pytest.mark.parametrize('codes, words', [
    (np.zeros((0, 3)), 'shape (0, 3)'),
    (np.zeros(5), 'shape (5,)'),
    (np.array([[0.0, np.nan]]), 'code 0 is not'),
])
def test_bad_codes_are_one_line_errors(codes, words):
  assert words in one_line_error(GaussianMixture.fit, codes)


def test_wide_codes_get_diagonal_covariances():
  rng = np.random.default_rng(3)
  x = rng.standard_normal((400, 200)) * np.linspace(0.5, 2.0, 200) + 1.0
  gmm = GaussianMixture.fit(x, components=2)
  assert gmm.covariance == 'diag' and gmm.covariances.shape == (2, 200)
  assert 'diag covariance' in gmm.describe()
  one = GaussianMixture.fit(x, components=1)
  want = stats.multivariate_normal(one.means[0], np.diag(one.covariances[0])).logpdf(x[:20])
  np.testing.assert_allclose(one.log_density(x[:20]), want, rtol=1e-10)
  np.testing.assert_allclose(one.sample(0, 20000).std(0), x.std(0), rtol=0.05)
  narrow = GaussianMixture.fit(x[:, :5], components=1, covariance='diag')
  assert narrow.covariance == 'diag' and narrow.components == 1
