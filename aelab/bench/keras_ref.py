"""Optional reference: the dense benchmark trained with Keras 3 on the JAX backend, as a JAX user
would write it: `keras.Sequential` of `Dense` layers, `compile(jit_compile=True,
steps_per_execution=train.steps_per_call)` and `model.fit` on NumPy arrays (verbose=0).

It is timed as a user runs it: `run(epochs)` is ONE call `model.fit(x, x, batch_size=B,
epochs=epochs, shuffle=False, verbose=0)` over a fixed array, the training rows shuffled once and
cut to full batches (no partial batch: no second compile, every step the same size), with no
callback of ours (keras dispatches its batch-end logs asynchronously only when every callback
allows it). Its seconds are the wall clock around the call, until the new weights are ready. They
include what a user's `fit` pays per call (building its epoch iterator, callback list and thread
pool, taking the variables into a jitted state and syncing them back) and per epoch (a new data
iterator, the state synced back and the logs pulled to the host): a user pays the per-call set-up
once per `fit`, so over a call of several seconds it weighs little, and leaving it out would need a
callback inside the timed call. `setup_s`, from a probe call at start-up, is the part before
the first batch.
Needs `pip install -e '.[bench]'` (keras >= 3; no TensorFlow).
"""

from __future__ import annotations

import importlib.metadata
import os
import time

import numpy as np

from aelab.errors import AelabError

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


def _check(config, layers) -> None:
  """Raises AelabError for anything of `config` this reference does not mirror; `layers` is the
  model's plain stack of dense layers (None when it is none)."""
  m, o, tc = config.model, config.optimizer, config.train
  if layers is None:
    raise AelabError(f'the keras reference mirrors a plain stack of dense layers (an untied '
                     f'dense model); model {m.name!r} is not one')
  terms = {name: dict(t) for name, t in config.loss.items() if float(t['weight']) != 0.0}
  rec = terms.get('reconstruction', {})
  if (set(terms) != {'reconstruction'} or rec.get('kind') not in ('bce', 'mse')
      or rec.get('reduction', 'mean') != 'mean' or float(rec['weight']) != 1.0):
    raise AelabError(f'the keras reference mirrors one loss only, reconstruction kind bce or mse '
                     f'with weight 1 and reduction mean; this config has {terms}')
  if rec['kind'] == 'bce' and layers[-1][1] != 'sigmoid':
    raise AelabError(f"the keras reference mirrors kind 'bce' on a sigmoid output only; "
                     f'the output activation is {layers[-1][1]!r}')
  if o.name not in _OPTIMIZERS or o.get('schedule', 'constant') != 'constant':
    raise AelabError(f'the keras reference mirrors optimizers {", ".join(_OPTIMIZERS)} with a '
                     f'constant learning rate; this one is {o.name!r}, schedule {o.schedule!r}')
  if config.get('preprocessing', 'none') != 'none' or config.get('input_noise') is not None:
    raise AelabError('the keras reference trains on the raw data: it needs preprocessing '
                     "'none' and no input_noise")
  if str(tc.get('compute_dtype', 'float32')) != 'float32':
    raise AelabError(f'the keras reference runs in float32, not {tc.compute_dtype!r}')


def _optimizer(o):
  """`o` (config.optimizer) as a keras optimizer, with optax's default epsilon."""
  from keras import optimizers as opt
  kw = {'learning_rate': o.learning_rate}
  if o.get('grad_clip', 0.0) > 0:
    kw['global_clipnorm'] = o.grad_clip
  return {
      'adam': lambda: opt.Adam(epsilon=1e-8, **kw),
      'adamw': lambda: opt.AdamW(weight_decay=o.weight_decay, epsilon=1e-8, **kw),
      'sgd': lambda: opt.SGD(momentum=o.momentum, **kw),
      'rmsprop': lambda: opt.RMSprop(momentum=o.momentum, epsilon=1e-8, **kw),
      'adadelta': lambda: opt.Adadelta(rho=o.adadelta_rho, epsilon=o.adadelta_eps, **kw),
  }[o.name]()


class KerasReference:
  """`config`'s dense autoencoder, loss and optimizer in Keras 3 (JAX backend), float32, compiled
  with jit_compile=True and steps_per_execution = train.steps_per_call; built, compiled by a
  one-epoch `fit` and probed by another (`setup_s`, `epoch_s`)."""

  def __init__(self, config, x_train: np.ndarray, layers: list[tuple[int, str]] | None):
    """`layers`: (width, activation) of each dense layer, code to output, the aelab model's
    `dense_stack()` (None where it has none)."""
    note = available()
    if note:
      raise AelabError(note)
    _check(config, layers)
    import keras
    self.k, self.batch_size = int(config.train.steps_per_call), int(config.train.batch_size)
    self.x = np.ascontiguousarray(x_train, np.float32).reshape(len(x_train), -1)
    keras.utils.set_random_seed(config.seed)
    self.model = keras.Sequential([keras.Input((self.x.shape[1],), dtype='float32')] + [
        keras.layers.Dense(w, activation=a, dtype='float32') for w, a in layers])
    kind = config.loss.reconstruction.kind  # per-element means, as aelab's reduction 'mean'
    loss = keras.losses.BinaryCrossentropy() if kind == 'bce' else keras.losses.MeanSquaredError()
    self.model.compile(optimizer=_optimizer(config.optimizer), loss=loss, jit_compile=True,
                       steps_per_execution=self.k)
    self._fixed_epoch(config.seed)
    self.losses: list[float] = []  # keras's logged loss of the last epoch of every `run`
    self.run(1)  # warm-up: compiles the train step
    self.setup_s, self.epoch_s = self._probe()

  def _fixed_epoch(self, seed: int) -> None:
    """The rows of every epoch: `self.x` shuffled once and cut to whole batches."""
    self.steps_per_epoch = len(self.x) // self.batch_size
    if self.steps_per_epoch == 0:
      raise AelabError(f'the keras reference needs at least one full batch: {len(self.x)} '
                       f'training rows, batch size {self.batch_size}')
    order = np.random.default_rng(seed).permutation(len(self.x))
    self.x = self.x[order[:self.steps_per_epoch * self.batch_size]]

  @property
  def num_params(self) -> int:
    return int(self.model.count_params())

  def epochs_for(self, seconds: float) -> int:
    """Whole epochs that take about `seconds` (at least 1), by the probe's epoch time."""
    return max(1, round(seconds / max(self.epoch_s, 1e-6)))

  def run(self, epochs: int) -> float:
    """Trains `epochs` whole epochs in one `fit`; returns its wall-clock seconds (module doc)."""
    import jax
    t0 = time.perf_counter()
    history = self.model.fit(self.x, self.x, batch_size=self.batch_size, epochs=epochs,
                             shuffle=False, verbose=0)
    jax.block_until_ready([v.value for v in self.model.variables])
    seconds = time.perf_counter() - t0
    self.losses.append(float(history.history['loss'][-1]))
    if not np.isfinite(self.losses[-1]):
      raise AelabError('the keras reference loss became non-finite')
    return seconds

  def _probe(self) -> tuple[float, float]:
    """(seconds from the call to the first batch, seconds of the rest) of a one-epoch `fit`,
    with a callback that keeps keras's asynchronous dispatch; the timed calls carry none."""
    import keras
    begin: list[float] = []

    class FirstBatch(keras.callbacks.Callback):
      async_safe = True

      def on_train_batch_begin(self, batch, logs=None):
        if not begin:
          begin.append(time.perf_counter())

    t0 = time.perf_counter()
    self.model.fit(self.x, self.x, batch_size=self.batch_size, epochs=1, shuffle=False,
                   verbose=0, callbacks=[FirstBatch()])
    t1 = time.perf_counter()
    return begin[0] - t0, t1 - begin[0]
