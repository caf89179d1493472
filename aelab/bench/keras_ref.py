"""Optional reference: the dense benchmark trained with Keras 3 on the JAX backend, as a JAX user
would write it: `keras.Sequential` of `Dense` layers, `compile(jit_compile=True,
steps_per_execution=train.steps_per_call)` and `model.fit` on NumPy arrays (verbose=0).

It measures the seconds of the training itself: from the start of the first batch to the end of
the last one (a callback; the last batch's outputs are waited for), so keras's per-step host work
(slicing the arrays, one jitted call per step, its async batch-end logs) counts, but the set-up and
tear-down of each `fit` call do not; those are reported apart as `last_fit_overhead_s`.
Needs `pip install -e '.[bench]'` (keras >= 3; no TensorFlow).
"""

from __future__ import annotations

import importlib.metadata
import os
import time

import numpy as np

from aelab.errors import AelabError
from aelab.models import dense

_INSTALL = "pip install -e '.[bench]'"
_OPTIMIZERS = ('adam', 'adamw', 'sgd', 'rmsprop', 'adadelta')


def available() -> str | None:
  """None when keras >= 3 imports on the jax backend, else a one-line note why not."""
  backend = os.environ.setdefault('KERAS_BACKEND', 'jax')
  if backend != 'jax':
    return f"KERAS_BACKEND is {backend!r}, not 'jax'"
  try:
    version = importlib.metadata.version('keras')
  except importlib.metadata.PackageNotFoundError:
    return f'keras is not installed: {_INSTALL}'
  if not version.split('.')[0].isdigit() or int(version.split('.')[0]) < 3:
    return f'keras {version} is installed; the reference needs keras >= 3: {_INSTALL}'
  try:
    import keras
  except Exception as e:  # pylint: disable=broad-except  # e.g. a backend that is not installed
    return f'keras {version} cannot be imported ({type(e).__name__}: {e})'.splitlines()[0]
  backend = keras.backend.backend()
  if backend != 'jax':
    return f"KERAS_BACKEND is {backend!r}, not 'jax' (set it before anything imports keras)"
  return None


def _check(config) -> None:
  """Raises AelabError for anything of `config` this reference does not mirror."""
  m, o, tc = config.model, config.optimizer, config.train
  if m.name != 'dense' or m.get('tied', False):
    raise AelabError(f'the keras reference mirrors untied dense models only; this model is '
                     f'{m.name!r}{" (tied)" if m.get("tied", False) else ""}')
  terms = {name: dict(t) for name, t in config.loss.items() if float(t['weight']) != 0.0}
  rec = terms.get('reconstruction', {})
  if (set(terms) != {'reconstruction'} or rec.get('kind') not in ('bce', 'mse')
      or rec.get('reduction', 'mean') != 'mean' or float(rec['weight']) != 1.0):
    raise AelabError(f'the keras reference mirrors one loss only, reconstruction kind bce or mse '
                     f'with weight 1 and reduction mean; this config has {terms}')
  if rec['kind'] == 'bce' and m.output_activation != 'sigmoid':
    raise AelabError(f"the keras reference mirrors kind 'bce' on a sigmoid output only; "
                     f'model.output_activation is {m.output_activation!r}')
  if o.name not in _OPTIMIZERS or o.get('schedule', 'constant') != 'constant':
    raise AelabError(f'the keras reference mirrors optimizers {", ".join(_OPTIMIZERS)} with a '
                     f'constant learning rate; this one is {o.name!r}, schedule {o.schedule!r}')
  if config.get('preprocessing', 'none') != 'none' or config.get('input_noise') is not None:
    raise AelabError('the keras reference trains on the raw data: it needs preprocessing '
                     "'none' and no input_noise")
  if str(tc.get('compute_dtype', 'float32')) != 'float32':
    raise AelabError(f'the keras reference runs in float32, not {tc.compute_dtype!r}')


class KerasReference:
  """`config`'s dense autoencoder, loss and optimizer in Keras 3 (JAX backend), float32, compiled
  with jit_compile=True and steps_per_execution = train.steps_per_call, warmed up (compiled)."""

  def __init__(self, config, x_train: np.ndarray):
    note = available()
    if note:
      raise AelabError(note)
    _check(config)
    import keras
    self.k, self.batch_size = int(config.train.steps_per_call), int(config.train.batch_size)
    self.x = np.ascontiguousarray(x_train, np.float32).reshape(len(x_train), -1)
    keras.utils.set_random_seed(config.seed)
    shape = dense.resolve(config.model)  # the encoder, then the decoder's hidden layers
    widths = (*shape.hidden, *shape.decoder)
    layers = [keras.Input((self.x.shape[1],), dtype='float32')]
    layers += [keras.layers.Dense(w, activation=a, dtype='float32')
               for w, a in zip(widths, (*shape.activation, *shape.decoder_activation))]
    layers.append(keras.layers.Dense(self.x.shape[1], dtype='float32',
                                     activation=config.model.output_activation))
    self.model = keras.Sequential(layers)
    o, opt = config.optimizer, keras.optimizers
    kw = {'learning_rate': o.learning_rate}
    if o.get('grad_clip', 0.0) > 0:
      kw['global_clipnorm'] = o.grad_clip
    optimizer = {  # epsilon as optax's defaults
        'adam': lambda: opt.Adam(epsilon=1e-8, **kw),
        'adamw': lambda: opt.AdamW(weight_decay=o.weight_decay, epsilon=1e-8, **kw),
        'sgd': lambda: opt.SGD(momentum=o.momentum, **kw),
        'rmsprop': lambda: opt.RMSprop(momentum=o.momentum, epsilon=1e-8, **kw),
        'adadelta': lambda: opt.Adadelta(rho=o.adadelta_rho, epsilon=o.adadelta_eps, **kw),
    }[o.name]()
    kind = config.loss.reconstruction.kind  # per-element means, as aelab's reduction 'mean'
    loss = keras.losses.BinaryCrossentropy() if kind == 'bce' else keras.losses.MeanSquaredError()
    self.model.compile(optimizer=optimizer, loss=loss, jit_compile=True,
                       steps_per_execution=self.k)
    self.order = np.random.default_rng(config.seed).permutation(len(self.x))
    self.position = 0  # rows of `order` used so far; it cycles
    self.last_fit_overhead_s = 0.0
    self.losses: list[float] = []  # keras's logged loss of every run (its mean over the run)
    self.run(self.k)  # warm-up: compiles the train step

  @property
  def num_params(self) -> int:
    return int(self.model.count_params())

  def run(self, steps: int) -> float:
    """Trains exactly `steps` full batches (a multiple of steps_per_call) in one `fit`; returns the
    seconds from the first batch's start to the end of the last batch's device work."""
    if steps <= 0 or steps % self.k:
      raise AelabError(f'steps = {steps}; it must be a positive multiple of steps_per_call '
                       f'{self.k}')
    import jax
    import keras
    rows = np.arange(self.position, self.position + steps * self.batch_size) % len(self.x)
    self.position = int(rows[-1] + 1) % len(self.x)
    x = self.x[self.order[rows]]
    times: dict[str, float] = {}
    last = steps - 1

    class Timer(keras.callbacks.Callback):
      async_safe = True  # keeps keras's async batch-end dispatch, as with no callback at all

      def on_train_batch_begin(self, batch, logs=None):
        if batch == 0:
          times['begin'] = time.perf_counter()

      def on_train_batch_end(self, batch, logs=None):
        if batch == last:  # `logs` arrive as floats (synced); wait for the new weights too
          jax.block_until_ready(getattr(self.model, '_jax_state', None))
          times['end'] = time.perf_counter()
          times['loss'] = float(logs['loss'])

    t0 = time.perf_counter()
    self.model.fit(x, x, batch_size=self.batch_size, epochs=1, shuffle=False, verbose=0,
                   callbacks=[Timer()])
    seconds = times['end'] - times['begin']
    self.last_fit_overhead_s = time.perf_counter() - t0 - seconds  # fit's set-up and tear-down
    self.losses.append(times['loss'])
    if not np.isfinite(times['loss']):
      raise AelabError('the keras reference loss became non-finite')
    return seconds
