"""Benchmark CLI: how fast aelab trains a config, against this machine's limits.

    AELAB_DATA_DIR=../shared/data/mnist python -m aelab.bench \
        --config=experiments/bench_dense.py:batch=256 [--config.a.b=v ...] \
        [--repeats=5] [--steps=0] [--out=bench.json]

After warm-up, each repeat measures, in this order (medians, min and max over repeats):

  compile    lower + compile of a fresh `train.make_train_block` (the default data path);
  aelab      the trainer's path: `train.Batches` + the jitted train block, `steps_per_call` steps
             per call, dispatched as `train_and_evaluate` does (the previous block's losses are
             checked while the next one runs; nothing else syncs until the end of the run);
             device-resident data (the default) and host-fed data (`device_data='no'`);
  on-device  the same train block on one pre-built [k, B, ...] block already on the device,
             reused: the input pipeline's cost is the time the aelab paths add to it;
  bare       the same flax module, loss and optax optimizer as a plain `jax.jit` of a `lax.scan`
             over the same pre-built block (no TrainState, metrics, sharding or data pipeline),
             on one device: the reference aelab's FLOP/s is compared with;
  matmul     a large jitted matmul of the training dtype (2048^2 on CPU, 8192^2 elsewhere):
             the device's reference FLOP/s, measured in the same run.

FLOP/s = matmul + convolution FLOPs of one train step, counted from the jaxpr of the real train
block (`aelab.flops`; forward and backward), times steps/s. With `--steps=0` each path runs about
`--target_s` seconds per repeat (whole blocks of steps_per_call). Within a repeat the paths take
turns of about `--chunk_s` seconds (each turn ends with one sync), so that a burst of load from
elsewhere on a shared machine hits them alike and their ratios stay meaningful. The table goes to
stdout, everything to `--out` as JSON. `train.compute_dtype` (where the config has it) sets the dtype of
the reference matmul.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from absl import app, flags
from ml_collections import config_flags

from aelab import config as config_lib
from aelab.errors import AelabError

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file[:arg].',
                                          lock_config=True)
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed repeats; results are medians with min, max.')
_STEPS = flags.DEFINE_integer('steps', 0, 'Train steps per timed run (rounded up to a multiple of '
                              'train.steps_per_call); 0: sized to about --target_s seconds.')
_TARGET_S = flags.DEFINE_float('target_s', 2.0, 'Seconds per path per repeat when --steps=0.')
_CHUNK_S = flags.DEFINE_float('chunk_s', 0.25, 'The paths take turns in runs of about this many '
                              'seconds (whole blocks), so bursts of load hit them alike; 0: one '
                              'run per path per repeat.')
_MATMUL = flags.DEFINE_integer('matmul_size', 0, 'Reference matmul size n (n x n @ n x n); '
                               '0: 2048 on CPU, 8192 on GPU/TPU.')
_OUT = flags.DEFINE_string('out', None, 'Write the results as JSON to this file.')
flags.mark_flags_as_required(['config'])


# --- statistics --------------------------------------------------------------------------------

def summarize(values: list[float]) -> dict[str, Any]:
  """{median, min, max, values} of one measurement over the repeats."""
  return {'median': statistics.median(values), 'min': min(values), 'max': max(values),
          'values': list(values)}


# --- the pieces under test ---------------------------------------------------------------------

@dataclasses.dataclass
class Setup:
  """Everything `train_and_evaluate` builds before its loop, built the same way."""
  config: Any
  dataset: Any
  model: Any
  noise: Any
  loss_fn: Callable
  tx: Any
  forward: Callable
  mesh: Any
  stats: Any
  state: Any
  device_data_default: bool
  batch_size: int
  steps_per_call: int
  dtype: str


def build(config) -> Setup:
  """The trainer's own setup (`train.build`), with the state initialised and stats placed."""
  import jax

  from aelab.trainer import sharding, train
  s = train.build(config)
  rep, tc = sharding.replicated(s.mesh), config.train
  return Setup(config=config, dataset=s.dataset, model=s.model, noise=s.noise, loss_fn=s.loss_fn,
               tx=s.tx, forward=s.forward, mesh=s.mesh, stats=sharding.put_tree(s.stats_host, rep),
               state=jax.jit(s.init, out_shardings=rep)(s.init_rng),
               device_data_default=s.batches.on_device, batch_size=tc.batch_size,
               steps_per_call=tc.steps_per_call, dtype=str(tc.get('compute_dtype', 'float32')))


def make_bare_block(model, loss_fn: Callable, tx, mode: str, noise=None,
                    compute_dtype: Any = None) -> Callable:
  """The same model's train step as a user would write it bare: jit(scan(step)) over batches
  already on the device, optax, the same flax module and composed loss (and input noise, for a
  denoiser); params and optimizer state donated; no metrics, no TrainState, nothing else."""

  import jax
  import optax

  import jax.numpy as jnp

  from aelab import corruption, losses
  from aelab.trainer import precision

  noise = noise or corruption.InputNoise()
  dtype = jnp.float32 if compute_dtype is None else compute_dtype

  def loss(params, stats, x, rng, step):
    k_input, k_model = jax.random.split(rng)
    z, z_in, _ = noise.prepare(mode, stats, x, k_input, noise.train)
    variables = {'params': precision.for_compute(params, dtype)}  # bf16 compute, f32 master
    recon, aux = precision.to_float32(model.apply(
        variables, precision.for_compute(z_in, dtype), train=True, rngs={'noise': k_model}))
    encode = lambda v: precision.to_float32(  # noqa: E731
        model.apply(variables, precision.for_compute(v, dtype), method=model.encode))
    return loss_fn(losses.Outputs(x=z, recon=recon, aux=aux, params=params, inputs=z_in,
                                  step=step, encode=encode))[0]

  def block(params, opt_state, step, stats, xs, key):
    def one(carry, x):
      params, opt_state, step = carry
      value, grads = jax.value_and_grad(loss)(params, stats, x, jax.random.fold_in(key, step), step)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state, step + 1), value
    (params, opt_state, step), values = jax.lax.scan(one, (params, opt_state, step), xs)
    return params, opt_state, step, values

  return jax.jit(block, donate_argnums=(0, 1, 2))


# --- timed runs --------------------------------------------------------------------------------

def _check_finite(metrics) -> None:
  import numpy as np
  loss = np.asarray(metrics['loss'])
  if not np.all(np.isfinite(loss)):
    raise AelabError('the loss became non-finite during the benchmark; lower '
                     'optimizer.learning_rate or set optimizer.grad_clip')


def run_blocks(block: Callable, state, stats, feed: Callable, start: int, steps: int, k: int):
  """Dispatches steps [start, start + steps) in blocks of k as the trainer loop does: block i is
  dispatched, then block i-1's losses are checked on the host; one sync at the end.
  `feed(step, k)` returns the block's (source, idx). Returns (state, seconds)."""
  import jax
  t0 = time.perf_counter()
  previous = None
  for s in range(start, start + steps, k):
    state, metrics = block(state, stats, *feed(s, k))
    if previous is not None:
      _check_finite(previous)
    previous = metrics
  _check_finite(previous)
  jax.block_until_ready(state)
  return state, time.perf_counter() - t0


def run_bare(block: Callable, carry, stats, xs, key, steps: int, k: int):
  """The bare loop: `steps // k` calls, no host work between them, one sync at the end."""
  import jax
  t0 = time.perf_counter()
  params, opt_state, step = carry
  for _ in range(steps // k):
    params, opt_state, step, values = block(params, opt_state, step, stats, xs, key)
  jax.block_until_ready((params, opt_state, values))
  return (params, opt_state, step), time.perf_counter() - t0


def time_compile(forward: Callable, tx, mesh, args, unroll: int | bool = 1) -> tuple[float, float]:
  """(lower seconds, compile seconds) of a freshly built train block (no cache can help)."""
  from aelab.trainer import train
  block = train.make_train_block(forward, tx, mesh, unroll)
  t0 = time.perf_counter()
  lowered = block.lower(*args)
  t1 = time.perf_counter()
  lowered.compile()
  return t1 - t0, time.perf_counter() - t1


class Matmul:
  """A chained n x n matmul in `dtype` (c <- c @ b, b ~ N(0, 1/n) keeps c's scale): FLOP/s."""

  def __init__(self, n: int, dtype: str):
    import jax
    import jax.numpy as jnp
    self.n, self.dtype = n, dtype
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    self.a = jax.random.normal(ka, (n, n), jnp.float32).astype(dtype)
    self.b = (jax.random.normal(kb, (n, n), jnp.float32) / math.sqrt(n)).astype(dtype)
    self.fn = jax.jit(lambda c, b: c @ b)
    jax.block_until_ready(self.fn(self.a, self.b))  # compile
    self.calls = 2

  def calibrate(self, target_s: float) -> None:
    """Sets `calls` so that `run()` takes about `target_s` seconds (at least 2 calls)."""
    self.calls = max(2, min(10000, round(target_s / max(self.run() / self.calls, 1e-6))))

  def run(self) -> float:
    """Seconds for `calls` chained matmuls (2 n^3 FLOPs each)."""
    import jax
    c = self.a
    t0 = time.perf_counter()
    for _ in range(self.calls):
      c = self.fn(c, self.b)
    jax.block_until_ready(c)
    return time.perf_counter() - t0


# --- the benchmark -----------------------------------------------------------------------------

def benchmark(config, *, repeats: int = 5, steps: int = 0, target_s: float = 2.0,
              chunk_s: float = 0.25, matmul_size: int = 0,
              log: Callable[[str], None] = lambda msg: None) -> dict:
  """Measures `config` (see the module docstring); returns the results as a JSON-able dict."""
  import jax
  import numpy as np

  from aelab.bench import flops
  from aelab.trainer import precision, sharding, train
  if repeats < 1:
    raise AelabError(f'--repeats = {repeats}; it must be at least 1')
  if steps < 0 or chunk_s < 0 or matmul_size < 0 or target_s <= 0:
    raise AelabError('--steps, --chunk_s and --matmul_size must be >= 0 and --target_s positive')
  t_start = time.perf_counter()
  s = build(config)
  k, bsz, mesh = s.steps_per_call, s.batch_size, s.mesh
  device = jax.devices()[0]
  seed = config.seed
  x = s.dataset.train.x

  # The data paths: the trainer's (device-resident, host-fed) and one pre-built block.
  feeds = {'device_data': train.Batches(x, bsz, seed, mesh, on_device=True).block,
           'host_fed': train.Batches(x, bsz, seed, mesh, on_device=False).block}
  host_block = x[train.Batches(x, bsz, seed, mesh, on_device=False).indices(0, k)]
  prebuilt = sharding.put(host_block, sharding.batch_sharding(mesh, 1))
  feeds['on_device'] = lambda step, k_: (prebuilt, None)
  default_path = 'device_data' if s.device_data_default else 'host_fed'

  # FLOPs of one train step, from the real train block's jaxpr (and the bare one's).
  block = train.make_train_block(s.forward, s.tx, mesh, s.config.train.scan_unroll)
  counts = flops.count_by_primitive(block, s.state, s.stats, prebuilt, None)
  step_flops = counts.total / k
  bare_block = make_bare_block(s.model, s.loss_fn, s.tx, config.preprocessing, s.noise,
                               precision.dtype(s.dtype))
  dev0 = lambda tree: jax.device_put(tree, device)  # noqa: E731
  bare_carry = dev0((jax.tree.map(lambda a: a.copy(), s.state.params),
                     jax.tree.map(lambda a: a.copy(), s.state.opt_state), np.int32(0)))
  bare_args = dev0((s.stats, host_block, jax.random.PRNGKey(seed)))
  bare_flops = flops.count(bare_block, *bare_carry, *bare_args) / k

  # Warm-up: compile every path once, then size the timed runs.
  log('warming up (compiling every path)')
  state, pos = s.state, 0
  for name in ('device_data', 'host_fed', 'on_device'):
    state, _ = run_blocks(block, state, s.stats, feeds[name], pos, k, k)
    pos += k
  bare_carry, _ = run_bare(bare_block, bare_carry, *bare_args, k, k)
  state, t_block = run_blocks(block, state, s.stats, feeds[default_path], pos, k, k)
  pos += k
  t_block = max(t_block, 1e-6)
  run_steps = k * math.ceil(steps / k) if steps else k * max(1, round(target_s / t_block))
  chunk = min(run_steps, k * max(1, round(chunk_s / t_block))) if chunk_s > 0 else run_steps
  rounds = math.ceil(run_steps / chunk)
  run_steps = rounds * chunk
  n = matmul_size or (2048 if device.platform == 'cpu' else 8192)
  matmul = Matmul(n, s.dtype)
  matmul.calibrate(max(chunk * t_block / k / 4, 1e-3))
  compile_args = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
                              (state, s.stats, *feeds['device_data'](0, k)))
  log(f'timing {repeats} repeats of {run_steps} steps per path, in turns of {chunk} steps')

  raw: dict[str, list[float]] = {key: [] for key in (
      'lower_s', 'xla_compile_s', 'device_data', 'host_fed', 'on_device', 'bare', 'matmul')}
  paths = ('device_data', 'host_fed', 'on_device')
  for r in range(repeats):
    lower_s, compile_s = time_compile(s.forward, s.tx, mesh, compile_args,
                                      s.config.train.scan_unroll)
    raw['lower_s'].append(lower_s)
    raw['xla_compile_s'].append(compile_s)
    sec = dict.fromkeys((*paths, 'bare', 'matmul'), 0.0)
    for _ in range(rounds):  # the paths take turns, so a burst of load hits them alike
      for name in paths:
        state, t = run_blocks(block, state, s.stats, feeds[name], pos, chunk, k)
        pos += chunk
        sec[name] += t
      bare_carry, t = run_bare(bare_block, bare_carry, *bare_args, chunk, k)
      sec['bare'] += t
      sec['matmul'] += matmul.run()
    for name in (*paths, 'bare'):
      raw[name].append(run_steps / sec[name])
    raw['matmul'].append(2 * n ** 3 * matmul.calls * rounds / sec['matmul'])
    log(f'repeat {r + 1}/{repeats}: aelab {raw[default_path][-1]:.2f} steps/s, '
        f'bare {raw["bare"][-1]:.2f} steps/s')

  def path(name: str, flops_per_step: float) -> dict:
    sps = raw[name]
    return {'steps_per_s': summarize(sps),
            'examples_per_s': summarize([v * bsz for v in sps]),
            'flops_per_s': summarize([v * flops_per_step for v in sps])}

  paired = lambda f, a, b: summarize([f(u, v) for u, v in zip(raw[a], raw[b])])  # noqa: E731
  aelab = path(default_path, step_flops)
  aelab['ratio_to_bare'] = paired(lambda u, v: u * step_flops / (v * bare_flops), default_path, 'bare')
  aelab['ratio_to_reference'] = paired(lambda u, v: u * step_flops / v, default_path, 'matmul')
  bare = path('bare', bare_flops)
  bare['ratio_to_reference'] = paired(lambda u, v: u * bare_flops / v, 'bare', 'matmul')
  added = lambda name: paired(lambda u, v: 100.0 * (v / u - 1.0), name, 'on_device')  # noqa: E731
  try:
    peak_device = (device.memory_stats() or {}).get('peak_bytes_in_use')
  except Exception:  # pylint: disable=broad-except  # not every backend keeps statistics
    peak_device = None
  return {
      'device': {'platform': device.platform, 'device_kind': device.device_kind,
                 'device_count': jax.device_count(), 'host_cpus': os.cpu_count(),
                 'host': platform.node(), 'jax': jax.__version__},
      'settings': {'batch_size': bsz, 'steps_per_call': k, 'steps_per_run': run_steps,
                   'steps_per_turn': chunk, 'matmul_calls_per_turn': matmul.calls,
                   'repeats': repeats, 'dtype': s.dtype, 'data_path': default_path,
                   'train_examples': len(x)},
      'flops_per_step': {'aelab': step_flops, 'bare': bare_flops,
                         'by_primitive': {p: v / k for p, v in counts.by_primitive.items()}},
      'compile_s': summarize([a + b for a, b in zip(raw['lower_s'], raw['xla_compile_s'])]),
      'lower_s': summarize(raw['lower_s']),
      'xla_compile_s': summarize(raw['xla_compile_s']),
      'train': aelab,
      'paths': {name: path(name, step_flops) for name in ('device_data', 'host_fed', 'on_device')},
      'bare': bare,
      'reference_matmul': {'size': n, 'dtype': s.dtype, 'flops_per_s': summarize(raw['matmul'])},
      'pipeline_added_pct': {'device_data': added('device_data'), 'host_fed': added('host_fed')},
      'peak_host_memory_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
      'peak_device_memory_mib': None if peak_device is None else peak_device / 2 ** 20,
      'wall_s': time.perf_counter() - t_start,
  }


# --- output ------------------------------------------------------------------------------------

def _fmt(v: float) -> str:
  if v == 0 or not math.isfinite(v):
    return f'{v:.3g}'
  return f'{v:,.0f}' if abs(v) >= 1000 else f'{v:.3g}'


def table(result: dict, title: str = '') -> str:
  """The results as a fixed-width table (median, min, max)."""
  st, dev = result['settings'], result['device']
  g = lambda d: {k: v / 1e9 for k, v in d.items() if k != 'values'}  # noqa: E731
  rows = [
      ('compile train block, s (lower+compile)', result['compile_s']),
      (f'aelab steps/s ({st["data_path"].replace("_", " ")})', result['train']['steps_per_s']),
      ('aelab examples/s', result['train']['examples_per_s']),
      ('aelab GFLOP/s', g(result['train']['flops_per_s'])),
      ('bare jit(scan) steps/s', result['bare']['steps_per_s']),
      ('bare GFLOP/s', g(result['bare']['flops_per_s'])),
      ('aelab / bare FLOP/s', result['train']['ratio_to_bare']),
      (f'reference matmul {result["reference_matmul"]["size"]}^2 {st["dtype"]} GFLOP/s',
       g(result['reference_matmul']['flops_per_s'])),
      ('aelab / reference matmul', result['train']['ratio_to_reference']),
      ('bare / reference matmul', result['bare']['ratio_to_reference']),
      ('on-device blocks steps/s (no pipeline)', result['paths']['on_device']['steps_per_s']),
      ('device-data steps/s', result['paths']['device_data']['steps_per_s']),
      ('host-fed steps/s', result['paths']['host_fed']['steps_per_s']),
      ('pipeline added, device data, %', result['pipeline_added_pct']['device_data']),
      ('pipeline added, host-fed, %', result['pipeline_added_pct']['host_fed']),
  ]
  width = max(len(name) for name, _ in rows)
  lines = [title] if title else []
  lines += [f'{dev["platform"]} ({dev["device_kind"]}, {dev["device_count"]} device(s), '
            f'{dev["host_cpus"]} host CPUs), {st["dtype"]}, batch {st["batch_size"]}, '
            f'{st["steps_per_call"]} steps/call, {st["steps_per_run"]} steps x {st["repeats"]} '
            'repeats',
            f'{"":{width}}  {"median":>10} {"min":>10} {"max":>10}']
  for name, d in rows:
    lines.append(f'{name:{width}}  {_fmt(d["median"]):>10} {_fmt(d["min"]):>10} {_fmt(d["max"]):>10}')
  fl = result['flops_per_step']
  lines.append(f'FLOPs/step (counted, fwd+bwd): {fl["aelab"]:.4g}; peak host memory '
               f'{result["peak_host_memory_mib"]:.0f} MiB; wall {result["wall_s"]:.0f} s')
  return '\n'.join(lines)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  import jax
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  jax.config.update('jax_enable_compilation_cache', False)  # compile time means compiling
  from aelab.trainer import sharding
  sharding.maybe_initialize_distributed()
  spec = next((a.split('=', 1)[1] for a in _ARGV if a.startswith('--config=')), '')
  overrides = [a for a in _ARGV if a.startswith('--config.')]
  log = lambda msg: print(f'aelab.bench: {msg}', file=sys.stderr, flush=True)  # noqa: E731
  result = benchmark(_CONFIG.value, repeats=_REPEATS.value, steps=_STEPS.value,
                     target_s=_TARGET_S.value, chunk_s=_CHUNK_S.value, matmul_size=_MATMUL.value, log=log)
  result = {'config': spec, 'overrides': overrides, **result,
            'resolved_config': json.loads(_CONFIG.value.to_json())}
  print(table(result, title=f'aelab.bench {spec} {" ".join(overrides)}'.strip()), flush=True)
  if _OUT.value:
    with open(_OUT.value, 'w') as f:
      json.dump(result, f, indent=2)
      f.write('\n')


_ARGV: list[str] = []


def run(argv: list[str] | None = None) -> None:
  argv = list(sys.argv if argv is None else argv)
  _ARGV[:] = argv
  config_lib.run_app(main, argv)


if __name__ == '__main__':
  run()
