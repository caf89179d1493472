"""kill -9 a training run at random times, rerun it, and compare with a run that never stopped.

    python tests/kill_runs.py --kills=20 --checkpoint_every=10 [--seed=0] [--dir=/tmp/kill_runs]
        [--config=experiments/vae_mnist.py:tiny]   (any tiny config; a stacked one compares
                                                    every run of the stack)
        [--writers=tensorboard,wandb,mlflow]       (train.writers; each tracker's history too)

Each trial starts `python -m aelab.run` on the config (mnist_ae:tiny by default; tests/data),
with its steps, logging and checkpoints set by the flags (a stacked config as it is), kills it
with SIGKILL after
a random delay drawn uniformly from [0, 1.1 x the reference run's duration] (so some kills land
during start-up, some during checkpoint writes, some after the final checkpoint or the run's
end), then reruns the same command to completion. A trial passes when the rerun exits 0 and its
final parameters (and optimizer state, step and RNG), metrics.jsonl (wall-clock fields aside)
and TensorBoard scalars equal the unbroken run's exactly (with --writers, also each tracker's
history: every (metric, step) of metrics.jsonl once). tests/test_faults.py runs a few kills;
the full count is for a release note.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / 'tests' / 'data'


CONFIG = 'experiments/mnist_ae.py:tiny'
WRITERS: list[str] = []  # --writers, as overrides


def command(workdir: pathlib.Path, checkpoint_every: int, num_steps: int,
            config: str = CONFIG) -> list[str]:
  run = [sys.executable, '-m', 'aelab.run', f'--config={config}', f'--workdir={workdir}',
         *WRITERS]
  if 'stacked' in config:  # its runs' cadences are the config's own
    return run
  return run + [f'--config.train.num_steps={num_steps}', '--config.train.log_every=10',
                '--config.train.steps_per_call=5',
                f'--config.train.checkpoint_every={checkpoint_every}',
                '--config.train.progress=False', '--config.evals.val.every=50',
                '--config.evals.plots.every=-1']


def env() -> dict:
  return dict(os.environ, AELAB_DATA_DIR=str(DATA), JAX_PLATFORMS='cpu')


def final_state(workdir: pathlib.Path) -> dict:
  """The newest checkpoint's arrays as {path: numpy array} (state and preprocessing)."""
  import jax

  from aelab.trainer import checkpoint
  with checkpoint.Checkpoints(workdir) as ckpts:
    step, arrays, _ = ckpts.restore_raw()
  return {'step': step, **{jax.tree_util.keystr(p): np.asarray(a)
                           for p, a in jax.tree_util.tree_flatten_with_path(arrays)[0]}}


def metric_rows(workdir: pathlib.Path) -> list[dict]:
  return [{k: v for k, v in json.loads(line).items() if k != 'time'}
          for line in (workdir / 'metrics.jsonl').read_text().splitlines()]


def tensorboard_scalars(workdir: pathlib.Path) -> dict[str, list[tuple[int, float]]]:
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  acc = EventAccumulator(str(workdir / 'tensorboard'), size_guidance={'scalars': 0})
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()['scalars']}


def same_run(a: pathlib.Path, b: pathlib.Path) -> dict[str, bool]:
  """Whether run b ended exactly as run a; a stacked run: every run of the stack."""
  subs = sorted(p.name for p in a.iterdir() if (p / 'checkpoints').is_dir())
  if subs:
    each = [same_run(a / s, b / s) for s in subs]
    return {k: all(e[k] for e in each) for k in each[0]}
  sa, sb = final_state(a), final_state(b)
  arrays = sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
  return {'params': arrays, 'metrics': metric_rows(a) == metric_rows(b),
          'tensorboard': tensorboard_scalars(a) == tensorboard_scalars(b), **trackers(a, b)}


def trackers(a: pathlib.Path, b: pathlib.Path) -> dict[str, bool]:
  """Whether each tracker of run b holds exactly run a's metrics.jsonl, each pair once."""
  import tracker_history as history
  ids = json.loads((b / 'trackers.json').read_text()) if (b / 'trackers.json').exists() else {}
  rows, out = history.jsonl(a), {}
  if 'mlflow' in ids:
    metrics, points, _ = history.mlflow(b)
    out['mlflow'] = points == len(metrics) and rows.keys() <= metrics.keys() and \
        history.same({k: metrics[k] for k in rows}, rows)
  if 'wandb' in ids:
    out['wandb'] = history.same(history.wandb(b), rows)
  return out


def leftovers(workdir: pathlib.Path) -> str:
  """What the kill left: the newest finished checkpoint, a half-written one, a summary (a
  stacked run: of each of its runs that has begun)."""
  subs = sorted(p for p in workdir.iterdir() if (p / 'config.json').exists()) \
      if workdir.is_dir() and not (workdir / 'checkpoints').is_dir() else []
  if subs:
    return '; '.join(f'{p.name}: {leftovers(p)}' for p in subs)
  ckpts = workdir / 'checkpoints'
  steps = sorted(int(p.name) for p in ckpts.glob('*') if p.name.isdigit()) if ckpts.is_dir() else []
  tmp = list(ckpts.glob('*tmp*')) if ckpts.is_dir() else []
  parts = [f'last checkpoint {steps[-1]}' if steps else 'no checkpoint']
  if tmp:
    parts.append('a checkpoint half-written')
  if (workdir / 'summary.json').exists():
    parts.append('summary written')
  return ', '.join(parts)


def trial(workdir: pathlib.Path, delay: float, checkpoint_every: int, num_steps: int,
          config: str = CONFIG, after: str | None = None) -> dict:
  """Kills the run `delay` seconds after it starts or, with `after` (a path in the workdir, e.g.
  'checkpoints/10'), `delay` seconds after that path appears; then reruns it to the end."""
  shutil.rmtree(workdir, ignore_errors=True)
  proc = subprocess.Popen(command(workdir, checkpoint_every, num_steps, config), cwd=ROOT,
                          env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  if after is not None:
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (workdir / after).exists():
      time.sleep(0.02)
  time.sleep(delay)
  finished = proc.poll() is not None
  proc.kill()
  proc.wait()
  left = 'the run had finished' if finished else leftovers(workdir)
  rerun = subprocess.run(command(workdir, checkpoint_every, num_steps, config), cwd=ROOT,
                         env=env(), capture_output=True, text=True, timeout=600)
  return {'delay_s': round(delay, 2), 'at_kill': left, 'rerun_exit': rerun.returncode,
          'rerun_says': (rerun.stdout.strip() or rerun.stderr.strip()).splitlines()[-1:]}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--kills', type=int, default=20)
  parser.add_argument('--checkpoint_every', type=int, default=10)
  parser.add_argument('--num_steps', type=int, default=1000)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--dir', default='/tmp/aelab_kill_runs')
  parser.add_argument('--config', default=CONFIG)
  parser.add_argument('--writers', default='', help='train.writers, comma-separated')
  args = parser.parse_args(argv)
  if args.writers:
    WRITERS[:] = [f'--config.train.writers={tuple(args.writers.split(","))!r}']
  name = pathlib.Path(args.config.split(':')[0]).stem
  base = pathlib.Path(args.dir) / f'{name}_every{args.checkpoint_every}'
  reference = base / 'reference'
  shutil.rmtree(reference, ignore_errors=True)
  t0 = time.time()
  subprocess.run(command(reference, args.checkpoint_every, args.num_steps, args.config), cwd=ROOT,
                 env=env(), check=True, capture_output=True)
  duration = time.time() - t0
  rng, passed = random.Random(args.seed), 0
  print(f'reference run: {duration:.1f} s; checkpoint every {args.checkpoint_every} steps')
  for i in range(args.kills):
    out = trial(base / f'trial{i}', rng.uniform(0, 1.1 * duration), args.checkpoint_every,
                args.num_steps, args.config)
    if out['rerun_exit'] == 0:
      out.update(same_run(reference, base / f'trial{i}'))
    ok = out['rerun_exit'] == 0 and all(out.get(k) for k in ('params', 'metrics', 'tensorboard')) \
        and all(out.get(k, True) for k in ('mlflow', 'wandb'))
    passed += ok
    print(json.dumps({'trial': i, 'ok': ok, **out}), flush=True)
  print(f'{passed}/{args.kills} killed runs completed on rerun identical to the unbroken run')
  return 0 if passed == args.kills else 1


if __name__ == '__main__':
  sys.exit(main())
