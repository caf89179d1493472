"""Corruptions and dynamic binarization: statistics, purity, config checks, and the denoising target."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import corruption, losses, preprocessing
from aelab.config import defaults
from aelab.errors import AelabError
from aelab.trainer.forward import Forward

pytestmark = pytest.mark.quick  # the fast tier: python -m pytest -m quick

KEY = jax.random.PRNGKey(0)
NONE = preprocessing.Preprocessor('none')


def _uniform(shape=(400, 250), seed=0):
  return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def test_masking_zeroes_the_given_fraction_and_keeps_the_rest():
  x = _uniform() + 0.5  # no zeros before masking
  y = np.asarray(corruption.masking(x, KEY, 0.25))
  zeroed = y == 0
  assert abs(zeroed.mean() - 0.25) < 0.005          # 100k entries: std of the fraction ~0.0014
  np.testing.assert_array_equal(y[~zeroed], x[~zeroed])
  assert np.all(np.asarray(corruption.masking(x, KEY, 0.0)) == x)
  assert np.all(np.asarray(corruption.masking(x, KEY, 1.0)) == 0)


def test_gaussian_noise_has_the_given_std_and_clips_to_the_range():
  x = _uniform()
  raw = np.asarray(corruption.gaussian(x, KEY, 0.5))
  assert abs((raw - x).std() - 0.5) < 0.005 and abs((raw - x).mean()) < 0.005
  assert raw.min() < -0.5 and raw.max() > 1.5       # unclipped noise leaves [0, 1]
  clipped = np.asarray(corruption.gaussian(x, KEY, 0.5, clip=(0.0, 1.0)))
  assert clipped.min() == 0.0 and clipped.max() == 1.0
  np.testing.assert_array_equal(clipped, np.clip(raw, 0.0, 1.0))  # same noise, then clipped
  # P(x + 0.5 n < 0) for x ~ U(0, 1) is int_0^1 Phi(-2x) dx = 0.1952; the same above 1.
  assert abs((clipped == 0).mean() - 0.1952) < 0.005 and abs((clipped == 1).mean() - 0.1952) < 0.005


def test_salt_and_pepper_sets_the_fraction_half_to_each_extreme():
  x = np.full((400, 250), 0.5, np.float32)
  y = np.asarray(corruption.salt_and_pepper(x, KEY, 0.2, low=-1.0, high=2.0))
  salt, pepper, kept = (y == 2.0).mean(), (y == -1.0).mean(), (y == 0.5).mean()
  assert abs(salt + pepper - 0.2) < 0.005
  assert abs(salt - 0.1) < 0.005 and abs(pepper - 0.1) < 0.005
  assert salt + pepper + kept == pytest.approx(1.0)


def test_binarize_is_a_bernoulli_sample_of_the_grey_levels():
  x = np.tile(np.array([0.0, 0.3, 0.9, 1.0], np.float32), (50000, 1))
  b = np.asarray(corruption.binarize(x, KEY))
  assert set(np.unique(b)) <= {0.0, 1.0} and b.dtype == np.float32
  np.testing.assert_allclose(b.mean(0), [0.0, 0.3, 0.9, 1.0], atol=0.01)


def test_transforms_are_pure_functions_of_the_key():
  x = _uniform((8, 30))
  for fn in (lambda k: corruption.masking(x, k, 0.3), lambda k: corruption.gaussian(x, k, 0.3),
             lambda k: corruption.salt_and_pepper(x, k, 0.3), lambda k: corruption.binarize(x, k)):
    np.testing.assert_array_equal(fn(KEY), fn(KEY))
    assert not np.array_equal(fn(KEY), fn(jax.random.PRNGKey(1)))
    np.testing.assert_allclose(jax.jit(fn)(KEY), fn(KEY), rtol=1e-6, atol=1e-6)  # fused FMA


@pytest.mark.parametrize('fields,message', [
    (dict(corruption='blur'), "unknown input_noise.corruption 'blur'"),
    (dict(corruption='masking', level=1.5), 'in [0, 1]'),
    (dict(corruption='gaussian', level=-0.1), '>= 0'),
    (dict(strength=0.3), 'unknown field strength in input_noise'),
])
def test_bad_input_noise_config_is_a_clear_error(fields, message):
  with pytest.raises(AelabError) as err:
    corruption.build(defaults.input_noise(**fields) if 'strength' not in fields else fields)
  assert message in str(err.value)


def test_binarize_needs_unit_interval_data():
  with pytest.raises(AelabError, match=r'needs data in \[0, 1\]'):
    corruption.build(dict(binarize=True), data_range=(-1.0, 3.0))
  assert corruption.build(dict(binarize=True), data_range=(0.0, 1.0)).binarize


# --- the forward pass: the model sees the corrupted input, the loss the clean one --------------

class _Identity(nn.Module):
  """recon = the input the model is given; one unused parameter."""

  @nn.compact
  def __call__(self, x, *, train=False):
    del train
    self.param('unused', nn.initializers.zeros_init(), (1,))
    return x, {'code': x.reshape(x.shape[0], -1)}

  def encode(self, x):
    return x.reshape(x.shape[0], -1)


def _forward(noise, loss_cfg=None):
  model = _Identity()
  loss_fn = losses.compose(loss_cfg or defaults.loss(reconstruction=dict(weight=1.0, kind='mse')))
  params = model.init(KEY, jnp.zeros((1, 20)))['params']
  return Forward(model, loss_fn, noise), params


def test_denoising_loss_compares_the_reconstruction_with_the_clean_input():
  x = _uniform((64, 20)) + 0.1
  noise = corruption.build(dict(corruption='masking', level=0.25))
  forward, params = _forward(noise)
  total, (terms, recon, _, _) = jax.jit(forward, static_argnums=4)(params, NONE, {'x': x}, KEY, True)
  recon = np.asarray(recon)
  masked = recon == 0
  assert abs(masked.mean() - 0.25) < 0.05           # the model saw a masked input...
  # ...and the loss is its error against the clean x: mean((masked x - x)^2) = mean(x^2 * mask).
  np.testing.assert_allclose(total, np.mean((recon - x) ** 2), rtol=1e-5)
  np.testing.assert_allclose(total, np.mean(np.where(masked, x, 0.0) ** 2), rtol=1e-5)
  assert float(total) > 0.05  # a noisy target would give exactly 0 for this identity model
  assert terms['reconstruction'] == total


def test_plain_training_and_clean_evaluation_do_not_corrupt():
  x = _uniform((16, 20)) + 0.1
  for noise, train_flag, corrupt in (
      (corruption.build(dict(corruption='gaussian', level=0.5, train=False)), True, None),
      (corruption.build(dict(corruption='gaussian', level=0.5)), False, None)):
    forward, params = _forward(noise)
    total, (_, recon, _, _) = forward(params, NONE, {'x': x}, KEY, train_flag, corrupt=corrupt)
    np.testing.assert_array_equal(recon, x)
    assert float(total) == 0.0
    # Asked explicitly (the eval step's noisy metrics), the input is corrupted.
    total, (_, recon, _, _) = forward(params, NONE, {'x': x}, KEY, False, corrupt=True)
    assert float(total) > 0.01 and recon.min() >= 0.0 and recon.max() <= 1.0


def test_binarized_target_is_the_sample_the_model_sees():
  x = _uniform((32, 20))
  noise = corruption.build(dict(binarize=True), data_range=(0.0, 1.0))
  model = _Identity()
  params = model.init(KEY, jnp.zeros((1, 20)))['params']
  seen = {}

  def loss_fn(out):
    seen.update(x=out.x, inputs=out.inputs)
    return jnp.zeros(()), {}

  forward = Forward(model, loss_fn, noise)
  forward(params, NONE, {'x': x}, KEY, True)
  assert set(np.unique(np.asarray(seen['x']))) == {0.0, 1.0}
  np.testing.assert_array_equal(seen['x'], seen['inputs'])
  # With a corruption as well, the target stays the binarized sample and only the input changes.
  noise = corruption.build(dict(binarize=True, corruption='masking', level=0.5), data_range=(0, 1))
  Forward(model, loss_fn, noise)(params, NONE, {'x': x}, KEY, True)
  target, inputs = np.asarray(seen['x']), np.asarray(seen['inputs'])
  assert set(np.unique(target)) == {0.0, 1.0}
  assert np.all((inputs == target) | (inputs == 0)) and (inputs < target).any()


def test_corruption_range_is_measured_after_preprocessing():
  from aelab import data
  ds = data.load(defaults.dataset('lowvar'), seed=0)
  noise = corruption.for_dataset(defaults.input_noise(corruption='salt_and_pepper', level=0.1), ds,
                                 preprocessing.Preprocessor.fit('minmax', ds.train.x))
  z = preprocessing.apply('minmax', preprocessing.fit('minmax', ds.train.x), ds.train.x)[0]
  assert noise.value_range == (float(np.min(z)), float(np.max(z))) == (-0.5, 0.5)
