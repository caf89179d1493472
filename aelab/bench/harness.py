"""The benchmark: the trainer's own loop (aelab/trainer/loop.py) against its references.

After warm-up, each repeat measures, in this order (medians, min and max over repeats):

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
  keras      (when keras 3 is installed, dense models) Keras on the JAX backend, `model.fit` of
             the same model and loss with jit_compile and steps_per_execution = steps_per_call,
             counting full batches only (aelab/bench/keras_ref.py);
  matmul     a large jitted matmul of the training dtype (2048^2 on CPU, 8192^2 elsewhere).

FLOP/s = matmul + convolution FLOPs of one train step counted from the jaxpr of the real train
block (aelab/bench/flops.py; forward and backward), times steps/s. The paths take turns of about
`chunk_s` seconds within a repeat (the default path next to bare, in reverse order every other
round), so a burst or drift of load from elsewhere hits them alike.
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


def _timed(loop: Loop, state, prep, start: int, steps: int):
  t0 = time.perf_counter()
  result = loop.run(state, prep, start, start + steps)
  return result.state, time.perf_counter() - t0


def _keras(config, x_train, log) -> tuple[object | None, str | None]:
  note = keras_ref.available()
  if note is None and config.model.name != 'dense':
    note = f'keras mirrors the dense model only; this config uses {config.model.name!r}'
  if note is not None:
    return None, note
  log('building the keras reference')
  try:
    return keras_ref.KerasReference(config, x_train), None
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
    self.bare_block = bare.make_bare_block(s.forward, s.tx)
    dev0 = lambda tree: jax.device_put(tree, device)  # noqa: E731
    self.bare_carry = dev0((jax.tree.map(lambda a: a.copy(), self.state.params),
                            jax.tree.map(lambda a: a.copy(), self.state.opt_state), np.int32(0)))
    self.bare_args = dev0((s.prep, host_block['x'], jax.random.PRNGKey(config.seed)))
    self.bare_flops = flops.count(self.bare_block, *self.bare_carry, *self.bare_args) / self.k
    self.keras = None

  def turn(self, name: str, steps: int) -> float:
    if name == 'bare':
      self.bare_carry, t = bare.run_bare(self.bare_block, self.bare_carry, *self.bare_args,
                                         steps, self.k)
      return t
    if name == 'keras':
      return self.keras.run(steps)
    t0 = time.perf_counter()
    self.state = self.loops[name].run(self.state, self.prep, self.pos, self.pos + steps).state
    self.pos += steps
    return time.perf_counter() - t0


def benchmark(config, *, repeats: int = 5, steps: int = 0, target_s: float = 2.0,
              chunk_s: float = 0.25, matmul_size: int = 0, keras: bool = True,
              log: Callable[[str], None] = lambda msg: None) -> dict:
  """Measures `config` (see the module docstring); returns the results as a JSON-able dict."""
  if repeats < 1:
    raise AelabError(f'--repeats = {repeats}; it must be at least 1')
  if steps < 0 or chunk_s < 0 or matmul_size < 0 or target_s <= 0:
    raise AelabError('--steps, --chunk_s and --matmul_size must be >= 0 and --target_s positive')
  t_start = time.perf_counter()
  s = build(config)
  run = _Turns(s, config)
  kref, keras_note = _keras(config, s.dataset.train.x, log) if keras else (None, 'off')
  run.keras = kref
  default = 'device_data' if s.batches.on_device else 'host_fed'
  # The default path and bare take adjacent turns, and every other round runs the turns in
  # reverse order, so that load drifting over a round weighs on the paths alike.
  paths = (default, 'bare', *(p for p in PATHS if p != default),
           *(('keras',) if kref is not None else ()))
  log('warming up (compiling every path)')
  for name in (*PATHS, 'bare'):
    run.turn(name, run.k)
  k, t_block = run.k, max(run.turn(default, run.k), 1e-6)
  run_steps = k * math.ceil(steps / k) if steps else k * max(1, round(target_s / t_block))
  chunk = min(run_steps, k * max(1, round(chunk_s / t_block))) if chunk_s > 0 else run_steps
  rounds = math.ceil(run_steps / chunk)
  run_steps = rounds * chunk
  n = matmul_size or (2048 if jax.devices()[0].platform == 'cpu' else 8192)
  matmul = bare.Matmul(n, str(config.train.compute_dtype))
  matmul.calibrate(max(chunk * t_block / k / 4, 1e-3))
  compile_args = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
                              (run.state, run.prep, *run.loops['device_data'].batches.block(0, k),
                               jax.numpy.asarray(True)))
  log(f'timing {repeats} repeats of {run_steps} steps per path, in turns of {chunk} steps')
  raw: dict[str, list[float]] = {key: [] for key in ('lower_s', 'xla_compile_s', *paths, 'matmul')}
  for r in range(repeats):
    for key, value in zip(('lower_s', 'xla_compile_s'), _time_compile(s, compile_args)):
      raw[key].append(value)
    sec = dict.fromkeys((*paths, 'matmul'), 0.0)
    for i in range(rounds):  # the paths take turns, so a burst of load hits them alike
      for name in (*paths, 'matmul')[::-1 if i % 2 else 1]:
        sec[name] += matmul.run() if name == 'matmul' else run.turn(name, chunk)
    for name in paths:
      raw[name].append(run_steps / sec[name])
    raw['matmul'].append(2 * n ** 3 * matmul.calls * rounds / sec['matmul'])
    log(f'repeat {r + 1}/{repeats}: ' + ', '.join(f'{p} {raw[p][-1]:.2f} steps/s'
                                                   for p in (default, 'bare', 'keras') if p in paths))
  settings = {'batch_size': s.batches.batch_size, 'steps_per_call': k, 'steps_per_run': run_steps,
              'steps_per_turn': chunk, 'matmul_calls_per_turn': matmul.calls,
              'repeats': repeats, 'dtype': str(config.train.compute_dtype), 'data_path': default,
              'train_examples': len(s.dataset.train)}
  return _result(raw, run.counts, run.bare_flops, default, settings, n, keras_note, t_start)


def _time_compile(s, args) -> tuple[float, float]:
  """(lower seconds, compile seconds) of a freshly built train block (no cache can help)."""
  block = s.train_block()
  t0 = time.perf_counter()
  lowered = block.lower(*args)
  t1 = time.perf_counter()
  lowered.compile()
  return t1 - t0, time.perf_counter() - t1


def _result(raw, counts, bare_flops, default, settings, n, keras_note, t_start) -> dict:
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
  keras = {'note': keras_note}
  if raw.get('keras'):
    keras = {'steps_per_s': summarize(raw['keras']),
             'examples_per_s': summarize([v * bsz for v in raw['keras']])}
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
      'settings': settings,
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
