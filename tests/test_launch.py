"""The launchers in launch/: the Colab notebook's code cells run on CPU; the scripts' commands."""

import json
import os
import subprocess
import sys

from conftest import DATA, ROOT

NOTEBOOK = ROOT / 'launch' / 'colab_tpu.ipynb'


def _notebook_code(workdir) -> str:
  """The notebook's Python (shell `!` and magic `%` lines left out) against mnist_ae:tiny."""
  cells = json.loads(NOTEBOOK.read_text())['cells']
  code = [''.join(c['source']) for c in cells if c['cell_type'] == 'code']
  lines = [line for cell in code for line in cell.splitlines() if not line.lstrip()[:1] in '!%']
  text = '\n'.join(lines)
  assert "CONFIG = 'experiments/mnist_ae.py'" in text
  assert "WORKDIR = '/content/runs/mnist_ae'" in text
  return (text.replace("'experiments/mnist_ae.py'", "'experiments/mnist_ae.py:tiny'")
          .replace("'/content/runs/mnist_ae'", repr(str(workdir))))


def test_the_colab_notebook_trains_on_every_device_and_shows_its_plots(tmp_path):
  code = _notebook_code(tmp_path / 'run') + '\nprint("PLOTS", len(plots))\n'
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2', JAX_PLATFORMS='cpu',
             AELAB_DATA_DIR=str(DATA), MPLBACKEND='Agg')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert '2 CPU devices' in out.stdout
  assert '60 steps on 2 devices' in out.stdout
  # reconstructions, filters, latent, train and val curves, samples and traversals (ex post)
  assert 'PLOTS 7' in out.stdout
  summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
  assert summary['devices'] == 2 and summary['step'] == 60


def test_the_tpu_vm_launcher_installs_and_runs_on_every_worker():
  out = subprocess.run(['bash', 'launch/tpu_vm.sh', 'tpu1', 'us-central2-b', 'v4-32',
                        'experiments/mnist_ae.py', '/mnt/runs/a', '--config.train.num_epochs=3'],
                       cwd=ROOT, env=dict(os.environ, DRY_RUN='1'), capture_output=True,
                       text=True, timeout=60)
  assert out.returncode == 0, out.stderr
  create, scp, ssh = out.stdout.strip().splitlines()
  assert create.startswith('gcloud compute tpus tpu-vm create tpu1 --zone=us-central2-b '
                           '--accelerator-type=v4-32')
  assert '--worker=all' in scp and '--worker=all' in ssh
  assert ("AELAB_DISTRIBUTED=1 nohup python -m aelab.run --config=experiments/mnist_ae.py "
          "--workdir=/mnt/runs/a --config.train.num_epochs=3") in ssh
  assert "pip install -q -e ~/aelab \\'jax[tpu]\\'" in ssh
  usage = subprocess.run(['bash', 'launch/tpu_vm.sh'], cwd=ROOT, capture_output=True, text=True)
  assert usage.returncode == 2 and usage.stderr.startswith('usage: ')


def test_the_slurm_script_runs_one_process_per_task_found_by_jax(tmp_path):
  """tests/fake_slurm/srun starts SLURM_NTASKS tasks here with SLURM's variables; jax's own
  SLURM detection joins them (no --coordinator_address), as on a cluster."""
  env = dict(os.environ, PATH=f'{ROOT / "tests" / "fake_slurm"}:{os.environ["PATH"]}',
             SLURM_JOB_ID='4242', SLURM_NTASKS='2', SLURM_NODELIST='localhost',
             SLURM_JOB_NODELIST='localhost', AELAB_DATA_DIR=str(DATA), JAX_PLATFORMS='cpu',
             XLA_FLAGS='--xla_force_host_platform_device_count=4')
  out = subprocess.run(['bash', 'launch/slurm_gpu.sh', 'experiments/mnist_ae.py:tiny',
                        str(tmp_path / 'run'), '--config.train.batch_size=64',
                        '--config.train.progress=False'],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.count('aelab: done, 60 steps') == 2
  summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
  assert (summary['processes'], summary['devices']) == (2, 8)
  outside = {k: v for k, v in os.environ.items() if not k.startswith('SLURM_')}
  out = subprocess.run(['bash', 'launch/slurm_gpu.sh', 'experiments/mnist_ae.py', '/tmp/x'],
                       cwd=ROOT, env=outside, capture_output=True, text=True)
  assert out.returncode == 2
  assert out.stderr.strip() == ('aelab: error: not inside a SLURM job: submit this script with '
                                'sbatch')


def _stand_ins(tmp_path, **scripts) -> dict:
  """Executables named after `scripts`' keys, with those bodies, first on PATH."""
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir(parents=True)
  for name, body in scripts.items():
    (bin_dir / name).write_text(f'#!/bin/bash\n{body}\n')
    (bin_dir / name).chmod(0o755)
  return dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}')


def test_the_tpu_vm_launcher_makes_a_preempted_tpu_anew(tmp_path):
  calls = tmp_path / 'calls'
  for state, expected in (('PREEMPTED', ['describe', 'delete', 'create', 'scp', 'ssh']),
                          ('READY', ['describe', 'scp', 'ssh'])):
    env = _stand_ins(tmp_path / state, gcloud=f'echo "$4" >> {calls}\n'
                     f'[ "$4" = describe ] && echo {state}; exit 0')
    calls.unlink(missing_ok=True)
    out = subprocess.run(['bash', 'launch/tpu_vm.sh', 'tpu1', 'z', 'v4-8', 'experiments/mnist_ae.py',
                          '/mnt/a'], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert calls.read_text().split() == expected, state


def test_the_slurm_script_requeues_on_75_and_on_a_killed_task_but_not_on_an_error(tmp_path):
  requeued = tmp_path / 'requeued'
  for code, restarts, expected in ((75, '9', True), (137, '0', True), (137, '5', False),
                                   (2, '0', False)):
    env = _stand_ins(tmp_path / f'{code}_{restarts}', srun=f'exit {code}',
                     scontrol=f'echo "$@" >> {requeued}')
    env.update(SLURM_JOB_ID='77', SLURM_RESTART_COUNT=restarts)
    requeued.unlink(missing_ok=True)
    out = subprocess.run(['bash', 'launch/slurm_gpu.sh', 'experiments/mnist_ae.py', '/tmp/x'],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == code
    assert requeued.exists() == expected, (code, restarts)
    if expected:
      assert requeued.read_text().strip() == 'requeue 77'
