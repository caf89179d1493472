"""The trainer: one jitted, sharded train step (scanned over a block of batches), evaluation,
checkpoints with automatic resume, and everything the run produces written to its workdir."""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import signal
import time
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from aelab import corruption, data, losses, models, plots, preprocessing
from aelab.trainer import checkpoint, optim, precision, sharding
from aelab.evaluators import reconstruction as evaluate, iwae
from aelab.config import check_fields
from aelab.errors import AelabError
from aelab.trainer.writers import MetricWriter, read_jsonl

DEFAULTS = dict(
    batch_size=128,
    num_epochs=10,
    num_steps=0,            # > 0 overrides num_epochs
    steps_per_call=10,      # train steps fused into one jitted lax.scan call
    log_every=100,
    eval_every=1000,        # 0: evaluate only at the end
    eval_batch_size=1000,
    checkpoint_every=1000,  # a checkpoint is also saved at the end and on SIGTERM/SIGINT
    keep_checkpoints=3,
    plots=True,
    progress=True,          # tqdm progress bar
    device_data='auto',     # keep the training set on the devices: auto (if <= 1 GiB), yes, no
    compute_dtype='float32',  # bfloat16: bf16 compute, float32 master weights, loss and metrics
    scan_unroll=1,          # lax.scan unroll of the block; XLA:CPU runs convolutions inside a
                            # rolled scan several times slower (jax-ml/jax#12868): unroll there
)
_DEVICE_DATA_AUTO_BYTES = 1 << 30

# Config groups that must not change when a run resumes from its workdir.
_FROZEN_ON_RESUME = ('seed', 'dataset', 'preprocessing', 'model', 'loss', 'optimizer', 'input_noise')
# Optional config groups: `input_noise` (aelab/corruption.py), `iwae` (aelab/iwae.py).
_OPTIONAL_GROUPS = ('input_noise', 'iwae')


def defaults(**overrides) -> ml_collections.ConfigDict:
  check_fields(overrides, DEFAULTS, 'train')
  return ml_collections.ConfigDict({**DEFAULTS, **overrides})


@flax.struct.dataclass
class TrainState:
  step: jax.Array       # int32 scalar; also the data position (epoch = step // steps_per_epoch)
  params: Any
  opt_state: Any
  rng: jax.Array        # base key; step t uses fold_in(rng, t)


def make_forward(model, loss_fn: Callable, mode: str,
                 noise: corruption.InputNoise | None = None,
                 compute_dtype: Any = jnp.float32) -> Callable:
  """Raw batch -> [binarize] -> preprocess -> [corrupt] -> model -> composed loss; the one forward
  pass train and eval share.

  forward(params, stats, x, rng, train, step=None, corrupt=None) -> (total, (terms, recon, ctx)).
  `rng` is split between the input noise (aelab/corruption.py) and the model's 'noise' stream
  (VAE sampling). The model sees the corrupted input when `corrupt` (default: `train` and
  input_noise.train); the loss target stays the clean (binarized, if so configured) batch.
  `step` is the train step for weight warm-up. `terms` holds every loss term, unweighted, plus
  the code statistics of `evaluate.code_statistics` (code_mean, code_near_zero).
  """
  noise = noise or corruption.InputNoise()
  needs_step = getattr(loss_fn, 'needs_step', False)

  def forward(params, stats, x, rng, train, step=None, corrupt=None):
    if train and step is None and needs_step:
      raise AelabError('a loss weight warms up (warmup_steps > 0), so the train step must pass '
                       'the step: forward(params, stats, x, rng, True, step=state.step)')
    k_input, k_model = jax.random.split(rng)
    corrupt = (train and noise.train) if corrupt is None else corrupt
    z, z_in, ctx = noise.prepare(mode, stats, x, k_input, corrupt)
    variables = {'params': precision.for_compute(params, compute_dtype)}
    recon, aux = precision.to_float32(model.apply(
        variables, precision.for_compute(z_in, compute_dtype), train=train, rngs={'noise': k_model}))

    def encode(v):
      return precision.to_float32(model.apply(variables, precision.for_compute(v, compute_dtype),
                                              method=model.encode))

    total, terms = loss_fn(losses.Outputs(x=z, recon=recon, aux=aux, params=params, inputs=z_in,
                                          step=step, encode=encode))
    return total, ({**terms, **evaluate.code_statistics(aux['code'])}, recon, ctx)

  return forward


def make_train_block(forward: Callable, tx: optax.GradientTransformation, mesh,
                     unroll: int | bool = 1) -> Callable:
  """jit(lax.scan(step)) over a block of k batches [k, B, ...]: state and stats replicated (the
  state donated), batches sharded on `data`; per-step metrics come back stacked [k]."""

  def step(carry, x):
    state, stats = carry
    rng = jax.random.fold_in(state.rng, state.step)
    grad_fn = jax.value_and_grad(lambda p: forward(p, stats, x, rng, True, step=state.step),
                                 has_aux=True)
    (total, (terms, _, _)), grads = grad_fn(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**terms, 'loss': total, 'grad_norm': optax.tree.norm(grads),
               'param_norm': optax.tree.norm(params)}
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return (new_state, stats), metrics

  def block(state, stats, source, idx):
    """source: the training set on the device and idx [k, B] rows of it, or the batches [k, B, ...]
    themselves with idx None (data fed from the host)."""
    xs = source if idx is None else jax.lax.with_sharding_constraint(source[idx], batches_spec)
    (state, _), metrics = jax.lax.scan(step, (state, stats), xs, unroll=unroll)
    return state, metrics

  rep, batches_spec = sharding.replicated(mesh), sharding.batch_sharding(mesh, 1)
  return jax.jit(block, out_shardings=(rep, rep), donate_argnums=(0,))


class Batches:
  """Batch t of the run is rows perm_e[i*B:(i+1)*B] with e, i = divmod(t, steps_per_epoch):
  a pure function of the step, so a resumed run sees exactly the data an unbroken one would.

  With `on_device`, the training set is placed on the devices once (replicated) and each block
  sends only its row indices; otherwise each block's batches are gathered on the host.
  """

  def __init__(self, x: np.ndarray, batch_size: int, seed: int, mesh, on_device: bool):
    self.x, self.batch_size, self.seed = x, batch_size, seed
    self.steps_per_epoch = len(x) // batch_size
    self._spec = sharding.batch_sharding(mesh, 1)
    self.on_device = on_device
    self._device_x = sharding.put(x, sharding.replicated(mesh)) if on_device else None
    self._epoch, self._perm = -1, None

  def indices(self, start: int, k: int) -> np.ndarray:
    out = np.empty((k, self.batch_size), np.int32)
    for j in range(k):
      epoch, i = divmod(start + j, self.steps_per_epoch)
      if epoch != self._epoch:
        self._epoch, self._perm = epoch, data.epoch_permutation(len(self.x), self.seed, epoch)
      out[j] = self._perm[i * self.batch_size:(i + 1) * self.batch_size]
    return out

  def block(self, start: int, k: int) -> tuple[jax.Array, jax.Array | None]:
    """(source, idx) for the train block covering steps [start, start + k)."""
    idx = self.indices(start, k)
    if self._device_x is not None:
      return self._device_x, sharding.put(idx, self._spec)
    return sharding.put(self.x[idx], self._spec), None


class _StopSignals:
  """SIGTERM/SIGINT set a flag; the loop checkpoints at the next block boundary and returns."""

  def __init__(self):
    self.received: str | None = None
    self._old = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._old[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


def _check_resume_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
  path = workdir / 'config.json'
  if not path.exists():
    return
  old, new = json.loads(path.read_text()), json.loads(config.to_json())
  changed = [k for k in _FROZEN_ON_RESUME if old.get(k) != new.get(k)]
  if changed:
    raise AelabError(
        f'{workdir} holds a run whose config differs in {", ".join(changed)}; resuming would mix '
        'two experiments. Use a new --workdir, or delete the old one.')


def _finite_or_raise(metrics: dict, first_step: int, ckpts: checkpoint.Checkpoints) -> None:
  losses_ = np.asarray(metrics['loss'])
  bad = np.flatnonzero(~np.isfinite(losses_))
  if bad.size:
    last = ckpts.latest_step()
    where = f'the last good checkpoint is step {last} in {ckpts.directory}' if last is not None \
        else 'no checkpoint was saved before it'
    raise AelabError(f'training stopped: the loss is {losses_[bad[0]]} at step {first_step + bad[0]} '
                     f'(lower optimizer.learning_rate or set optimizer.grad_clip); {where}')


def _param_count(params) -> int:
  return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))


@dataclasses.dataclass(frozen=True)
class Setup:
  """What a run builds from its config before training; everything validated, nothing written."""
  config: ml_collections.ConfigDict
  dataset: data.Dataset
  model: Any
  noise: corruption.InputNoise
  iwae_fields: Any
  unit: bool              # the data lie in [0, 1] (bce metrics apply)
  loss_fn: Callable
  mesh: Any
  batches: Batches
  total_steps: int
  tx: optax.GradientTransformation
  forward: Callable
  stats_host: dict        # preprocessing statistics fitted on the training split
  init: Callable          # init(rng) -> TrainState
  init_rng: jax.Array


def build(config: ml_collections.ConfigDict) -> Setup:
  """Resolves and validates data, preprocessing, model, loss and optimizer (AelabError on any
  bad field) and places the training set; shared by the trainer and the benchmark."""
  check_fields(config, ('seed', 'dataset', 'preprocessing', 'model', 'loss', 'optimizer', 'train',
                        *_OPTIONAL_GROUPS), 'config')
  tc = config.train
  check_fields(tc, DEFAULTS, 'train')
  preprocessing.check_mode(config.preprocessing)
  dataset = data.load(config.dataset, seed=config.seed)
  model = models.build(config.model, dataset.feature_shape)
  noise = corruption.for_dataset(config.get('input_noise'), dataset, config.preprocessing)
  iwae_fields = iwae.resolve(config.get('iwae'), model)
  unit = dataset.value_range is not None and dataset.value_range[0] >= 0 and dataset.value_range[1] <= 1
  loss_fn = losses.compose(config.loss, layer_activations=models.layer_activations(config.model),
                           targets_in_unit_interval=unit and config.preprocessing == 'none')
  mesh = sharding.make_mesh()
  sharding.check_batch_size(tc.batch_size, mesh)
  on_device = {'auto': dataset.train.x.nbytes <= _DEVICE_DATA_AUTO_BYTES, 'yes': True, 'no': False}
  if tc.device_data not in on_device:
    raise AelabError(f"train.device_data = {tc.device_data!r}; valid choices: auto, yes, no")
  if len(dataset.train) < tc.batch_size:
    raise AelabError(f'train.batch_size = {tc.batch_size} exceeds the {len(dataset.train)} training '
                     'examples; lower it')
  batches = Batches(dataset.train.x, tc.batch_size, config.seed, mesh, on_device[tc.device_data])
  total_steps = tc.num_steps or tc.num_epochs * batches.steps_per_epoch
  if total_steps <= 0 or tc.steps_per_call <= 0:
    raise AelabError('train.num_steps (or num_epochs) and train.steps_per_call must be positive')
  tx = optim.make(config.optimizer, total_steps)
  forward = make_forward(model, loss_fn, config.preprocessing, noise,
                         precision.dtype(tc.compute_dtype))
  init_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  stats_host = preprocessing.fit(config.preprocessing, dataset.train.x)
  example = preprocessing.apply(config.preprocessing, stats_host, dataset.train.x[:1])[0]

  def init(rng):
    params = model.init(rng, jnp.asarray(example))['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      rng=train_rng)

  return Setup(config=config, dataset=dataset, model=model, noise=noise, iwae_fields=iwae_fields,
               unit=unit, loss_fn=loss_fn, mesh=mesh, batches=batches, total_steps=total_steps,
               tx=tx, forward=forward, stats_host=stats_host, init=init, init_rng=init_rng)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                       should_stop: Callable[[int], bool] | None = None) -> dict:
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns the summary.

  `should_stop(step)` is asked after every block of steps; True checkpoints and returns early
  (as SIGTERM/SIGINT do), and rerunning resumes exactly where it stopped.
  """
  t_start = time.time()
  workdir = pathlib.Path(workdir)
  main_process = jax.process_index() == 0
  setup = build(config)
  tc, dataset, model, noise, mesh = config.train, setup.dataset, setup.model, setup.noise, setup.mesh
  batches, total_steps, tx, forward = setup.batches, setup.total_steps, setup.tx, setup.forward
  init, init_rng, stats_host = setup.init, setup.init_rng, setup.stats_host
  train_block = make_train_block(forward, tx, mesh, tc.scan_unroll)
  eval_step = evaluate.make_eval_step(forward, config.preprocessing, setup.unit,
                                      noisy=noise.corrupts)
  learning_rate = optim.schedule(config.optimizer, total_steps)
  rep = sharding.replicated(mesh)
  stats = sharding.put_tree(stats_host, rep)

  workdir.mkdir(parents=True, exist_ok=True)
  ckpts = checkpoint.Checkpoints(workdir, keep=tc.keep_checkpoints)
  resume_step = ckpts.latest_step()
  if resume_step is not None:
    _check_resume_config(workdir, config)
    abstract = jax.eval_shape(init, init_rng)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), abstract)
    arrays, _ = ckpts.restore(resume_step, {'state': abstract,
                                            'preprocessing': checkpoint.abstract(stats)})
    state, stats = arrays['state'], arrays['preprocessing']
  else:
    state = jax.jit(init, out_shardings=rep)(init_rng)
  if main_process:
    (workdir / 'config.json').write_text(config.to_json(indent=2) + '\n')

  meta = {'config': json.loads(config.to_json()), 'preprocessing': config.preprocessing,
          'preprocessing_formula': preprocessing.describe(config.preprocessing, stats_host),
          'feature_shape': list(dataset.feature_shape), 'dataset': dataset.source}
  writer = MetricWriter(workdir, resume_step=resume_step or 0, enabled=main_process)
  step = int(resume_step or 0)
  every = lambda n: n > 0 and step % n == 0  # noqa: E731
  pending: list[tuple[int, dict]] = []   # per-step metrics of blocks not yet logged
  clock, timed_from, untimed, stopped_by = None, step, 0.0, None

  def untimed_work(fn):  # eval and checkpoints do not count towards train steps/s
    def wrapped(*args):
      nonlocal untimed
      jax.block_until_ready(state.step)
      t = time.time()
      out = fn(*args)
      untimed += time.time() - t
      return out
    return wrapped

  @untimed_work
  def save():
    ckpts.save(step, {'state': state, 'preprocessing': stats}, {**meta, 'step': step})

  @untimed_work
  def run_eval(split_name: str, x: np.ndarray) -> dict:
    out = evaluate.evaluate(eval_step, state.params, stats, x, tc.eval_batch_size, mesh)
    writer.write(step, {f'{split_name}/{k}': v for k, v in out.items()})
    return out

  bar = tqdm.tqdm(total=total_steps, initial=step, unit='step', dynamic_ncols=True,
                  disable=not (tc.progress and main_process))
  with _StopSignals() as signals:
    while step < total_steps:
      k = min(tc.steps_per_call, total_steps - step,
              *(n - step % n for n in (tc.log_every, tc.eval_every, tc.checkpoint_every) if n > 0))
      state, metrics = train_block(state, stats, *batches.block(step, k))
      if pending:  # check the previous block while this one runs
        _finite_or_raise(pending[-1][1], pending[-1][0], ckpts)
      pending.append((step, metrics))
      step += k
      bar.update(k)
      stop = signals.received or (should_stop is not None and should_stop(step))
      if every(tc.log_every) or step == total_steps or stop:
        for first, m in pending:
          _finite_or_raise(m, first, ckpts)
        host = jax.device_get([m for _, m in pending])
        means = {f'train/{key}': float(np.mean(np.concatenate([np.atleast_1d(h[key]) for h in host])))
                 for key in host[0]}
        writer.write(step, {**means, 'train/learning_rate': float(learning_rate(step - 1))})
        bar.set_postfix(loss=f'{means["train/loss"]:.4g}')
        pending = []
      if clock is None:  # time from the end of the first (compiling) block
        jax.block_until_ready(state.step)
        clock, timed_from = time.time(), step
      if every(tc.eval_every) and step < total_steps:
        run_eval('val', dataset.val.x)
      if every(tc.checkpoint_every) or stop:
        save()
      if stop:
        stopped_by = signals.received or 'should_stop'
        break
  bar.close()

  if stopped_by:
    ckpts.wait()
    ckpts.close()
    writer.close()
    print(f'aelab: stopped by {stopped_by} at step {step}/{total_steps}; checkpoint saved in '
          f'{ckpts.directory}. Rerun the same command to resume.', flush=True)
    return {'step': step, 'interrupted': stopped_by}

  jax.block_until_ready(state.step)
  train_time, timed_steps = time.time() - clock - untimed, step - timed_from
  if ckpts.latest_step() != step:
    save()
  results = {name: run_eval(name, split.x) for name, split in
             (('val', dataset.val), ('test', dataset.test)) if len(split)}
  if setup.iwae_fields and 'test' in results:  # a VAE's importance-weighted bound on the test set
    bound = iwae.evaluate(model, state.params, stats, dataset.test.x, setup.iwae_fields,
                          config.preprocessing, noise)
    writer.write(step, {f'test/{k}': v for k, v in bound.items()})
    results['test'].update(bound)
  ckpts.wait()
  ckpts.close()
  writer.close()
  summary = {
      'step': step,
      'wall_time_s': time.time() - t_start,
      'train_steps_per_s': timed_steps / train_time if train_time > 0 else math.nan,
      'train_examples_per_s': timed_steps * tc.batch_size / train_time if train_time > 0 else math.nan,
      'param_count': _param_count(state.params),
      'resumed_from_step': resume_step,
      'devices': mesh.devices.size,
      'platform': jax.devices()[0].platform,
      **results,
  }
  if main_process:
    (workdir / 'summary.json').write_text(json.dumps(summary, indent=2) + '\n')
    if tc.plots:
      _plots(workdir, forward, state, stats, dataset, config, model, noise)
  return summary


def _plots(workdir: pathlib.Path, forward, state, stats, dataset, config, model,
           noise: corruption.InputNoise) -> None:
  """reconstructions (with corrupted inputs and their reconstructions for a denoiser), train and
  val curves (every loss term), first-layer filters, the code coloured by label, VAE samples."""
  mode, out = config.preprocessing, workdir / 'plots'
  split = dataset.test if len(dataset.test) else dataset.val
  x = split.x[:10]
  rng = jax.random.PRNGKey(0)
  _, (_, recon, ctx) = jax.jit(forward, static_argnums=4)(state.params, stats, x, rng, False)
  x_hat = np.asarray(preprocessing.invert(mode, stats, recon, ctx))
  value_range = dataset.value_range or (float(x.min()), float(x.max()))
  apply = jax.jit(lambda p, v, key: model.apply({'params': p}, v, rngs={'noise': key})[0])
  if dataset.is_image and noise.corrupts:
    _, z_in, ctx_in = noise.prepare(mode, stats, x, rng, True)
    noisy = np.asarray(preprocessing.invert(mode, stats, z_in, ctx_in))
    denoised = np.asarray(preprocessing.invert(mode, stats, apply(state.params, z_in, rng), ctx_in))
    plots.image_rows([x, noisy, denoised, x_hat], ['clean', 'corrupted', 'denoised', 'recon of clean'],
                     out / 'reconstructions.png', value_range)
  elif dataset.is_image:
    plots.image_rows([x, x_hat], ['input', 'recon'], out / 'reconstructions.png', value_range)
  else:
    plots.vector_rows(x[:4], x_hat[:4], out / 'reconstructions.png',
                      title=f'{dataset.name}: input vs reconstruction (input units)')
  rows = read_jsonl(workdir / 'metrics.jsonl')
  plots.curves(rows, out / 'train_curves.png', 'train/')
  plots.curves(rows, out / 'val_curves.png', 'val/')
  title = f'{config.model.name} on {dataset.name}'
  filters = models.filters(config.model, jax.device_get(state.params), dataset.feature_shape)
  if filters is not None:
    plots.filters(np.asarray(filters), out / 'filters.png', f'{title}: first-layer filters')
  if split.y is not None:
    xs = split.x[:2000]
    z = preprocessing.apply(mode, stats, xs)[0]
    code = jax.jit(lambda p, v: model.apply({'params': p}, v, method=model.encode))(state.params, z)
    plots.latent_scatter(np.asarray(code), split.y[:2000], out / 'latent.png',
                         dataset.source.get('label_names') if isinstance(dataset.source, dict) else None,
                         f'{title}: code of {len(xs)} held-out examples')
  if config.model.name == 'vae' and dataset.is_image and mode != 'per_sample':
    z = jax.random.normal(jax.random.PRNGKey(1), (64, config.model.latent))
    samples = jax.jit(lambda p, v: model.apply({'params': p}, v, method=model.decode))(state.params, z)
    plots.image_grid(np.asarray(preprocessing.invert(mode, stats, samples, {})), out / 'samples.png',
                     value_range, f'{title}: decoder means of z ~ N(0, I)')
