"""What a run reads from and writes to its workdir: the workdir and config checks, restore or
init, the finished-run check, metrics.jsonl rows to keep, the work at a boundary (evaluations due,
checkpoint due), the final evaluations and the summary. Shared by a lone run (train.py) and runs
trained together (train.py, replicas.py)."""

from __future__ import annotations

import functools
import json
import pathlib

import jax
import ml_collections

from aelab import files
from aelab.config import catalog, defaults
from aelab.errors import AelabError
from aelab.trainer import checkpoint, distributed, sharding, signals
from aelab.trainer.setup import Setup, param_count
from aelab.trainer.state import TrainState
from aelab.trainer.writers import MetricWriter, read_jsonl

# Fields that must not change when a run resumes from its workdir.
FROZEN_ON_RESUME = ('seed', 'dataset', 'preprocessing', 'model', 'loss', 'optimizer', 'input_noise',
                    'train.batch_size')


def check_workdir(workdir: str | pathlib.Path) -> pathlib.Path:
  if not str(workdir).strip():
    raise AelabError('--workdir is empty; give the directory to train into, e.g. '
                     '--workdir=workdirs/mnist_ae')
  workdir = pathlib.Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise AelabError(f'--workdir={str(workdir)!r} is a file, not a directory; choose another path')
  return workdir


def _with_new_fields(old: dict) -> dict:
  """A config.json written before a model or optimizer field existed, with that field's default
  (what the run trained with), so that adding a field does not make old runs unresumable."""
  name = (old.get('model') or {}).get('name')
  tables = {'model': catalog.options('model', name) if name in catalog.names('model') else {},
            'optimizer': defaults.OPTIMIZER}
  for group, table in tables.items():
    if isinstance(old.get(group), dict):
      old[group] = {**json.loads(json.dumps(table)), **old[group]}
  return old


def _check_resume_config(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> None:
  path = workdir / 'config.json'
  if not path.exists():
    return
  old = files.read_json(path)
  if not isinstance(old, dict):
    raise AelabError(f'{path} does not hold a config (a JSON object); restore it or remove it')
  old, new = _with_new_fields(old), json.loads(config.to_json())
  get = lambda cfg, key: cfg.get(key) if '.' not in key else (  # noqa: E731
      cfg.get(key.split('.')[0]) or {}).get(key.split('.')[1])
  changed = [k for k in FROZEN_ON_RESUME if get(old, k) != get(new, k)]
  if changed:
    raise AelabError(
        f'{workdir} holds a run whose config differs in {", ".join(changed)}; resuming would mix '
        'two experiments. Use a new --workdir, or delete the old one.')


def restore_or_init(setup: Setup, ckpts: checkpoint.Checkpoints, workdir: pathlib.Path,
                    step: int | None = None, given: dict | None = None):
  """(state, prep, meta) on the devices: the latest verified checkpoint's (the latest at or
  before `step`, when given; step 0: none), or fresh ones (with the `given` parameters)."""
  prep = sharding.put_tree(setup.prep, sharding.replicated(setup.mesh))
  placed = setup.state_sharding(given)
  if ckpts.latest_step() is None or step == 0:
    return jax.jit(setup.init, out_shardings=placed)(setup.init_rng, given), prep, {}
  _check_resume_config(workdir, setup.config)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                          jax.eval_shape(functools.partial(setup.init, from_data=False),
                                         setup.init_rng), placed)
  step, arrays, meta = ckpts.restore({'state': abstract.saved(),
                                      'preprocessing': checkpoint.abstract(prep.stats)}, step)
  if step > setup.total_steps:
    raise AelabError(f'{workdir} holds a checkpoint at step {step}, beyond this config\'s '
                     f'{setup.total_steps} steps; raise train.num_steps or use a new --workdir')
  state = TrainState.from_saved(arrays['state'])
  return state, prep.replace(stats=arrays['preprocessing']), {**meta, 'step': step}


def finished_summary(workdir: pathlib.Path, step: int, total_steps: int) -> dict | None:
  """The summary of a run that already finished these steps, else None."""
  path = workdir / 'summary.json'
  if step != total_steps or not path.exists():
    return None
  try:
    summary = json.loads(path.read_text())
  except json.JSONDecodeError:
    return None
  return summary if summary.get('step') == total_steps else None


def rows_to_keep(workdir: pathlib.Path, meta: dict, step: int) -> int:
  """metrics.jsonl rows written before the checkpoint resumed from (all of them for a fresh run
  are dropped). Checkpoints of earlier versions did not count them: keep rows up to their step."""
  if 'metrics_rows' in meta:
    return int(meta['metrics_rows'])
  return sum(1 for r in read_jsonl(workdir / 'metrics.jsonl') if r.get('step', 0) <= step) \
      if step else 0


def log_evaluation(writer: MetricWriter, step: int, ev, metrics: dict) -> dict:
  if metrics:
    writer.write(step, {f'{ev.split}/{k}': v for k, v in metrics.items()})
  return metrics


def final_evaluations(setup: Setup, state, prep, writer, step: int) -> dict | None:
  """Every evaluator due at the end, by split; None when a stop request interrupted them."""
  results: dict[str, dict] = {}
  for ev in setup.evaluators:
    if distributed.agree(signals.received()):
      return None
    if ev.due(step, final=True):
      results.setdefault(ev.split, {}).update(log_evaluation(writer, step, ev, ev.run(state, prep)))
  return {k: v for k, v in results.items() if v}


def summary(setup: Setup, result, results: dict, start: int, wall_s: float) -> dict:
  timed = result.timed_steps > 0 and result.timed_s > 0
  rate = result.timed_steps / result.timed_s if timed else None
  return {
      'step': result.step,
      'wall_time_s': wall_s,
      'train_steps_per_s': rate,
      'train_examples_per_s': rate * setup.batches.batch_size if timed else None,
      'param_count': param_count(result.state.params),
      'param_bytes_per_device': sharding.bytes_per_device(result.state.params),
      'opt_state_bytes_per_device': sharding.bytes_per_device(result.state.opt_state),
      'resumed_from_step': start or None,
      'devices': setup.mesh.devices.size,
      'processes': jax.process_count(),
      'mesh': dict(setup.mesh.shape),
      'platform': jax.devices()[0].platform,
      **results,
  }


def boundary_work(setup: Setup, ckpts, writer: MetricWriter, step: int, state, prep,
                  stopping: bool, pending: dict) -> None:
  """At a loop boundary: the evaluators due (not when stopping), then the checkpoint due (every
  train.checkpoint_every steps, at the last step and when stopping), saved with the train metrics
  `pending` since the last log step and the rows written so far."""
  tc, total = setup.config.train, setup.total_steps
  for ev in setup.evaluators:
    if ev.every > 0 and step < total and not stopping and ev.due(step, final=False):
      log_evaluation(writer, step, ev, ev.run(state, prep))
  if stopping or step == total or (tc.checkpoint_every and step % tc.checkpoint_every == 0):
    ckpts.save(step, {'state': state.saved(), 'preprocessing': prep.stats},
               {**setup.meta(), 'step': step, 'pending_metrics': pending,
                'metrics_rows': writer.rows})


def periods(setup: Setup) -> tuple[int, ...]:
  """The steps the loop's blocks must end on besides log steps: checkpoints, evaluations."""
  return (setup.config.train.checkpoint_every,
          *(ev.every for ev in setup.evaluators if ev.every > 0))
