"""The optional Keras 3 (JAX backend) reference of the dense benchmark: aelab/bench/keras_ref.py."""

import jax
import numpy as np
import pytest

from aelab import data, models
from aelab.bench import keras_ref
from aelab.errors import AelabError
from conftest import experiment

_NOTE = keras_ref.available()
pytestmark = pytest.mark.skipif(_NOTE is not None, reason=f'keras reference: {_NOTE}')


def _tiny():
  config = experiment('bench_dense', 'tiny')
  return config, data.load(config.dataset, seed=config.seed)


def _ref(config, x):
  """The reference of `config`'s model, from the model's own plain dense stack."""
  stack = models.build(config.model, x.shape[1:]).dense_stack()
  return keras_ref.KerasReference(config, x, stack)


def test_same_model_and_it_learns_on_full_batches_of_a_fixed_order():
  config, ds = _tiny()
  x = ds.train.x
  model = models.build(config.model, ds.feature_shape)
  params = model.init(jax.random.PRNGKey(0), x[:1])
  ref = _ref(config, x)
  assert ref.num_params == sum(int(np.size(a)) for a in jax.tree.leaves(params))
  b = config.train.batch_size
  assert ref.steps_per_epoch == len(x) // b and ref.x.shape == (ref.steps_per_epoch * b, 784)
  order = np.random.default_rng(config.seed).permutation(len(x))  # shuffled once, cut to batches
  np.testing.assert_array_equal(ref.x, x.reshape(len(x), -1)[order[:len(ref.x)]])
  assert ref.setup_s >= 0 and ref.epoch_s > 0
  for _ in range(4):
    ref.run(5)  # 20 epochs of 18 steps
  assert len(ref.losses) == 5 and ref.losses[-1] < 0.8 * ref.losses[0], ref.losses


def test_epochs_are_sized_from_the_probe_and_a_fit_needs_a_full_batch():
  config, ds = _tiny()
  ref = _ref(config, ds.train.x[:120])
  assert ref.steps_per_epoch == 2
  ref.epoch_s = 0.5
  assert (ref.epochs_for(2.0), ref.epochs_for(0.1)) == (4, 1)
  with pytest.raises(AelabError, match='at least one full batch'):
    _ref(config, ds.train.x[:config.train.batch_size - 1])


def test_mse_and_activations_per_layer():
  config, ds = _tiny()
  config.loss.reconstruction.kind = 'mse'
  config.model.activation = 'tanh,sigmoid'
  ref = _ref(config, ds.train.x[:200])
  acts = [layer.activation.__name__ for layer in ref.model.layers]
  assert acts == ['tanh', 'sigmoid', 'tanh', 'sigmoid']
  assert ref.run(1) > 0


def test_a_given_decoder_is_built_the_same():
  config, ds = _tiny()
  config.model.update(mirror=False, decoder=(12, 20), decoder_activation='relu,tanh')
  ref = _ref(config, ds.train.x[:200])
  params = models.build(config.model, ds.feature_shape).init(jax.random.PRNGKey(0), ds.train.x[:1])
  assert ref.num_params == sum(int(np.size(a)) for a in jax.tree.leaves(params))
  widths = (*config.model.hidden, 12, 20, int(np.prod(ds.feature_shape)))
  assert [layer.units for layer in ref.model.layers] == list(widths)
  assert [layer.activation.__name__ for layer in ref.model.layers][-3:] == [
      'relu', 'tanh', config.model.output_activation]


def test_what_it_cannot_mirror():
  config, ds = _tiny()
  config.model.tied = True
  with pytest.raises(AelabError, match='plain stack of dense layers'):
    _ref(config, ds.train.x)
  config, _ = _tiny()
  config.optimizer.schedule = 'cosine'
  with pytest.raises(AelabError, match='constant learning rate'):
    _ref(config, ds.train.x)
