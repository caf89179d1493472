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


def test_same_model_times_and_learns():
  config, ds = _tiny()
  x = ds.train.x
  model = models.build(config.model, ds.feature_shape)
  params = model.init(jax.random.PRNGKey(0), x[:1])
  ref = keras_ref.KerasReference(config, x)
  assert ref.num_params == sum(int(np.size(a)) for a in jax.tree.leaves(params))
  k = config.train.steps_per_call
  seconds = ref.run(2 * k)
  assert seconds > 0 and ref.last_fit_overhead_s >= 0
  with pytest.raises(AelabError, match='multiple of steps_per_call'):
    ref.run(k + 1)
  first = ref.losses[-1]
  for _ in range(4):
    ref.run(20 * k)  # 400 steps in all
  assert ref.losses[-1] < 0.8 * first, ref.losses
  assert ref.position == (ref.k + 2 * k + 80 * k) * config.train.batch_size % len(x)


def test_mse_and_activations_per_layer():
  config, ds = _tiny()
  config.loss.reconstruction.kind = 'mse'
  config.model.activation = 'tanh,sigmoid'
  ref = keras_ref.KerasReference(config, ds.train.x[:200])
  acts = [layer.activation.__name__ for layer in ref.model.layers]
  assert acts == ['tanh', 'sigmoid', 'tanh', 'sigmoid']
  assert ref.run(config.train.steps_per_call) > 0


def test_a_given_decoder_is_built_the_same():
  config, ds = _tiny()
  config.model.update(mirror=False, decoder=(12, 20), decoder_activation='relu,tanh')
  ref = keras_ref.KerasReference(config, ds.train.x[:200])
  params = models.build(config.model, ds.feature_shape).init(jax.random.PRNGKey(0), ds.train.x[:1])
  assert ref.num_params == sum(int(np.size(a)) for a in jax.tree.leaves(params))
  widths = (*config.model.hidden, 12, 20, int(np.prod(ds.feature_shape)))
  assert [layer.units for layer in ref.model.layers] == list(widths)
  assert [layer.activation.__name__ for layer in ref.model.layers][-3:] == [
      'relu', 'tanh', config.model.output_activation]


def test_what_it_cannot_mirror():
  config, ds = _tiny()
  config.model.tied = True
  with pytest.raises(AelabError, match='untied dense'):
    keras_ref.KerasReference(config, ds.train.x)
  config, _ = _tiny()
  config.optimizer.schedule = 'cosine'
  with pytest.raises(AelabError, match='constant learning rate'):
    keras_ref.KerasReference(config, ds.train.x)
