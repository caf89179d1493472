"""The benchmark: the trainer's own loop (aelab/trainer/loop.py) against its references.

After warm-up, each repeat measures (medians, min and max over repeats):

  compile    lower + compile of a fresh train block (the default data path);
  aelab      `Loop.run` of the trainer, exactly as `train_and_evaluate` calls it (blocks of
             `steps_per_call`, finished blocks checked while the newest runs, train metrics
             averaged at every log step), on device-resident data (the default) and host-fed
             data (`device_data='no'`);
  on-device  the same loop over one pre-built [k, B, ...] block already on the device, reused:
             the input pipeline's cost is the time the aelab paths add to it;
  bare       the same forward pass and optax optimizer as a plain `jax.jit` of a `lax.scan`
             over the same pre-built block (no TrainState, metrics, sharding or data pipeline),
             on one device: the reference aelab's FLOP/s is compared with;
  matmul     a large jitted matmul of the training dtype (2048^2 on CPU, 8192^2 elsewhere);
  keras      (when keras 3 is installed, dense models) Keras on the JAX backend, `model.fit` of
             the same model and loss with jit_compile and steps_per_execution = steps_per_call
             (aelab/bench/keras_ref.py).

FLOP/s = matmul + convolution FLOPs of one train step counted from the jaxpr of the real train
block (aelab/bench/flops.py; forward and backward), times steps/s. The aelab paths, bare and the
matmul take turns of about `chunk_s` seconds within a repeat (the default path next to bare, in
reverse order every other round), so a burst or drift of load from elsewhere hits them alike;
none of them pays a per-call cost that turns would multiply. Keras does (each `fit` builds its
iterator, callbacks and state), so it is timed as a user runs it: per repeat ONE `fit` of whole
epochs lasting about `keras_s` seconds, after the turns in even repeats and before them in odd
ones, steps/s = its steps / the wall clock around the call, set-up included (keras_ref.py says
why). aelab / keras is the median over repeats of aelab's steps/s in a repeat's turns over
keras's steps/s in that repeat's fit.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import sys
import time
from collections.abc import Callable

import jax
import numpy as np

from aelab.bench import bare, flops, keras_ref
from aelab.bench.report import summarize
from aelab.errors import AelabError
from aelab.trainer import optim, sharding
from aelab.trainer.batches import Batches
from aelab.trainer.loop import Loop
from aelab.trainer.setup import build

PATHS = ('device_data', 'host_fed', 'on_device')
# How the figures are measured, in the JSON beside them.
TURNS_TIMING = ('aelab paths, bare and matmul: per repeat, steps_per_run steps each in turns of '
                'steps_per_turn steps (every other round in reverse order); steps/s = '
                'steps_per_run / the seconds of its turns')
KERAS_TIMING = ('per repeat one model.fit of epochs_per_fit whole epochs (full batches of a fixed '
                'shuffled array, no callback), after the turns in even repeats and before them in '
                'odd ones; steps/s = steps_per_fit / wall-clock seconds of the call (its set-up '
                'included); aelab / keras pairs each repeat\'s turns with its fit')


class _Prebuilt:
  """A feed that returns one block already on the device, whatever the step."""

  def __init__(self, block):
    self._block = block

  def block(self, step: int, k: int):
    return self._block, None


def _paths(s):
  """The trainer's loops over each data path, and the pre-built block the references use."""
  tc, ds, mesh = s.config.train, s.dataset, s.mesh
  host = Batches(ds.train, s.batches.batch_size, s.config.seed, mesh, on_device=False)
  host_block = {key: a[host.indices(0, tc.steps_per_call)] for key, a in host.arrays.items()}
  prebuilt = sharding.put_tree(host_block, sharding.batch_sharding(mesh, 1))
  feeds = {'device_data': Batches(ds.train, s.batches.batch_size, s.config.seed, mesh,
                                   on_device=True),
           'host_fed': host, 'on_device': _Prebuilt(prebuilt)}
  block = s.train_block()
  lr = optim.schedule(s.config.optimizer, s.total_steps)
  loops = {name: Loop(block, feed, steps_per_call=tc.steps_per_call, total_steps=sys.maxsize,
                      log_every=tc.log_every, learning_rate=lr) for name, feed in feeds.items()}
  return loops, block, prebuilt, host_block


def _keras(config, s, log) -> tuple[object | None, str | None]:
  note = keras_ref.available()
  if note is not None:
    return None, note
  log('building the keras reference')
  stack = getattr(s.forward.model, 'dense_stack', lambda: None)()
  try:
    return keras_ref.KerasReference(config, s.dataset.train.x, stack), None
  except AelabError as e:  # a config keras cannot mirror (tied weights, bf16, ...): a note
    return None, str(e)


class _Turns:
  """The timed paths and where the shared train state stands: each `turn(name, steps)` runs one
  path for `steps` steps from the current position and returns its seconds."""

  def __init__(self, s, config):
    tc, device, rep = config.train, jax.devices()[0], sharding.replicated(s.mesh)
    self.k, self.pos = tc.steps_per_call, 0
    self.prep = sharding.put_tree(s.prep, rep)
    self.state = jax.jit(s.init, out_shardings=rep)(s.init_rng)
    self.loops, block, self.prebuilt, host_block = _paths(s)
    self.counts = flops.count_by_primitive(block, self.state, self.prep, self.prebuilt, None)
    self.bare_block = bare.make_bare_block(s.forward, s.tx, tc.scan_unroll)
    dev0 = lambda tree: jax.device_put(tree, device)  # noqa: E731
    copy = lambda tree: jax.tree.map(lambda a: a.copy(), tree)  # noqa: E731
    self.bare_carry = dev0((copy(self.state.params), copy(self.state.opt_state), np.int32(0),
                            copy(self.state.stats)))
    self.bare_args = dev0((s.prep, host_block['x'], jax.random.PRNGKey(config.seed)))
    self.bare_flops = flops.count(self.bare_block, *self.bare_carry, *self.bare_args) / self.k

  def turn(self, name: str, steps: int) -> float:
    if name == 'bare':
      self.bare_carry, t = bare.run_bare(self.bare_block, self.bare_carry, *self.bare_args,
                                         steps, self.k)
      return t
    t0 = time.perf_counter()
    self.state = self.loops[name].run(self.state, self.prep, self.pos, self.pos + steps).state
    self.pos += steps
    return time.perf_counter() - t0


def benchmark(config, *, repeats: int = 5, steps: int = 0, target_s: float = 2.0,
              chunk_s: float = 0.25, keras_s: float = 5.0, matmul_size: int = 0,
              keras: bool = True, log: Callable[[str], None] = lambda msg: None) -> dict:
  """Measures `config` (see the module docstring); returns the results as a JSON-able dict."""
  if repeats < 1:
    raise AelabError(f'--repeats = {repeats}; it must be at least 1')
  if steps < 0 or chunk_s < 0 or matmul_size < 0 or target_s <= 0 or keras_s <= 0:
    raise AelabError('--steps, --chunk_s and --matmul_size must be >= 0 and --target_s and '
                     '--keras_s positive')
  t_start = time.perf_counter()
  s = build(config)
  run = _Turns(s, config)
  kref, keras_note = _keras(config, s, log) if keras else (None, 'off')
  default = 'device_data' if s.batches.on_device else 'host_fed'
  # The default path and bare take adjacent turns, and every other round runs the turns in
  # reverse order, so that load drifting over a round weighs on the paths alike.
  paths = (default, 'bare', *(p for p in PATHS if p != default))
  log('warming up (compiling every path)')
  for name in (*PATHS, 'bare'):
    run.turn(name, run.k)
  k, t_block = run.k, max(run.turn(default, run.k), 1e-6)
  run_steps = k * math.ceil(steps / k) if steps else k * max(1, round(target_s / t_block))
  chunk = min(run_steps, k * max(1, round(chunk_s / t_block))) if chunk_s > 0 else run_steps
  rounds = math.ceil(run_steps / chunk)
  n = matmul_size or (2048 if jax.devices()[0].platform == 'cpu' else 8192)
  matmul = bare.Matmul(n, str(config.train.compute_dtype))
  matmul.calibrate(max(chunk * t_block / k / 4, 1e-3))
  settings = {'batch_size': s.batches.batch_size, 'steps_per_call': k,
              'steps_per_run': rounds * chunk, 'steps_per_turn': chunk,
              'matmul_calls_per_turn': matmul.calls, 'repeats': repeats,
              'dtype': str(config.train.compute_dtype), 'data_path': default,
              'train_examples': len(s.dataset.train)}
  fit = _KerasFits(kref, steps, keras_s) if kref is not None else None
  log(f'timing {repeats} repeats of {rounds * chunk} steps per path, in turns of {chunk} steps'
      + (f'; keras: one fit of {fit.epochs} epoch(s) per repeat' if fit else ''))
  raw = _repeats(s, run, paths, matmul, rounds, chunk, fit, repeats, log)
  keras_info = fit.info() if fit else {'note': keras_note}
  return _result(raw, run.counts, run.bare_flops, default, settings, n, keras_info, t_start)


class _KerasFits:
  """The keras path: per repeat one `fit` of whole epochs, about `keras_s` seconds (or at least
  `steps` steps when --steps is given), timed by the wall clock around it (keras_ref.py)."""

  def __init__(self, kref, steps: int, keras_s: float):
    self.kref = kref
    per_epoch = kref.steps_per_epoch
    self.epochs = math.ceil(steps / per_epoch) if steps else kref.epochs_for(keras_s)

  def steps_per_s(self) -> float:
    return self.epochs * self.kref.steps_per_epoch / self.kref.run(self.epochs)

  def info(self) -> dict:
    r = self.kref
    return {'epochs_per_fit': self.epochs, 'steps_per_epoch': r.steps_per_epoch,
            'steps_per_fit': self.epochs * r.steps_per_epoch, 'fit_setup_s': r.setup_s,
            'final_loss': r.losses[-1], 'timing': KERAS_TIMING}


def _repeats(s, run, paths, matmul, rounds: int, chunk: int, fit, repeats: int, log) -> dict:
  """Raw figures of every repeat: compile seconds, steps/s of each path and keras, FLOP/s of
  the matmul. Keras's one fit runs after the turns in even repeats, before them in odd ones."""
  k, n = run.k, matmul.n
  compile_args = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
                              (run.state, run.prep, *run.loops['device_data'].batches.block(0, k),
                               jax.numpy.asarray(True)))
  raw: dict[str, list[float]] = {key: [] for key in ('lower_s', 'xla_compile_s', *paths, 'matmul',
                                                     'keras')}
  for r in range(repeats):
    for key, value in zip(('lower_s', 'xla_compile_s'), _time_compile(s, compile_args)):
      raw[key].append(value)
    if fit and r % 2:
      raw['keras'].append(fit.steps_per_s())
    sec = dict.fromkeys((*paths, 'matmul'), 0.0)
    for i in range(rounds):  # the paths take turns, so a burst of load hits them alike
      for name in (*paths, 'matmul')[::-1 if i % 2 else 1]:
        sec[name] += matmul.run() if name == 'matmul' else run.turn(name, chunk)
    if fit and not r % 2:
      raw['keras'].append(fit.steps_per_s())
    for name in paths:
      raw[name].append(rounds * chunk / sec[name])
    raw['matmul'].append(2 * n ** 3 * matmul.calls * rounds / sec['matmul'])
    log(f'repeat {r + 1}/{repeats}: ' + ', '.join(f'{p} {raw[p][-1]:.2f} steps/s'
                                                   for p in (paths[0], 'bare', 'keras') if raw[p]))
  return raw


def _time_compile(s, args) -> tuple[float, float]:
  """(lower seconds, compile seconds) of a freshly built train block (no cache can help)."""
  block = s.train_block()
  t0 = time.perf_counter()
  lowered = block.lower(*args)
  t1 = time.perf_counter()
  lowered.compile()
  return t1 - t0, time.perf_counter() - t1


def _result(raw, counts, bare_flops, default, settings, n, keras_info, t_start) -> dict:
  k, bsz = settings['steps_per_call'], settings['batch_size']
  step_flops = counts.total / k

  def path(name: str, flops_per_step: float) -> dict:
    sps = raw[name]
    return {'steps_per_s': summarize(sps), 'examples_per_s': summarize([v * bsz for v in sps]),
            'flops_per_s': summarize([v * flops_per_step for v in sps])}

  paired = lambda f, a, b: summarize([f(u, v) for u, v in zip(raw[a], raw[b])])  # noqa: E731
  aelab = path(default, step_flops)
  aelab['ratio_to_bare'] = paired(lambda u, v: u * step_flops / (v * bare_flops), default, 'bare')
  aelab['ratio_to_reference'] = paired(lambda u, v: u * step_flops / v, default, 'matmul')
  keras = dict(keras_info)
  if raw['keras']:  # a per-repeat pair: aelab's turns and keras's fit of the same repeat
    keras.update(steps_per_s=summarize(raw['keras']),
                 examples_per_s=summarize([v * bsz for v in raw['keras']]))
    aelab['ratio_to_keras'] = paired(lambda u, v: u / v, default, 'keras')
  bare_path = path('bare', bare_flops)
  bare_path['ratio_to_reference'] = paired(lambda u, v: u * bare_flops / v, 'bare', 'matmul')
  added = lambda name: paired(lambda u, v: 100.0 * (v / u - 1.0), name, 'on_device')  # noqa: E731
  device = jax.devices()[0]
  try:
    peak_device = (device.memory_stats() or {}).get('peak_bytes_in_use')
  except Exception:  # pylint: disable=broad-except  # not every backend keeps statistics
    peak_device = None
  return {
      'device': {'platform': device.platform, 'device_kind': device.device_kind,
                 'device_count': jax.device_count(), 'host_cpus': os.cpu_count(),
                 'host': platform.node(), 'jax': jax.__version__},
      'settings': {**settings, 'timing': TURNS_TIMING},
      'flops_per_step': {'aelab': step_flops, 'bare': bare_flops,
                         'by_primitive': {p: v / k for p, v in counts.by_primitive.items()}},
      'compile_s': summarize([a + b for a, b in zip(raw['lower_s'], raw['xla_compile_s'])]),
      'lower_s': summarize(raw['lower_s']),
      'xla_compile_s': summarize(raw['xla_compile_s']),
      'train': aelab,
      'paths': {name: path(name, step_flops) for name in PATHS},
      'bare': bare_path,
      'keras': keras,
      'reference_matmul': {'size': n, 'dtype': settings['dtype'],
                           'flops_per_s': summarize(raw['matmul'])},
      'pipeline_added_pct': {'device_data': added('device_data'), 'host_fed': added('host_fed')},
      'peak_host_memory_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      'peak_device_memory_mib': None if peak_device is None else peak_device / 2 ** 20,
      'wall_s': time.perf_counter() - t_start,
  }
