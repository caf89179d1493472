"""Sweeps: declarations, command-line axes, names and indices, validation before anything runs,
real sweeps of sparse_kl_mnist:tiny (parallel, a failing point, kill -9 and rerun, a job array's
--index tasks, the SLURM script), the summary, and the experiments' reference sweeps."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from aelab import cli
from aelab.config import defaults, files, sweeps
from aelab.errors import AelabError
from aelab.sweep import axes, figures, groups, layout, naming, points, summary
from conftest import DATA, ROOT, experiment

SPARSE = 'experiments/sparse_kl_mnist.py:tiny'
# 2 x 2 (weight x seed), 20 steps, no plots: about 15 s for the four points on two cores.
AXES = ('--file_sweep=false', '--sweep=loss.kl_sparsity.weight=0.3,3', '--sweep=seed=0,1',
        '--config.train.num_steps=20', '--config.evals.plots.every=-1')
NAMES = ['weight=0.3,seed=0', 'weight=0.3,seed=1', 'weight=3,seed=0', 'weight=3,seed=1']
TIMING = ('wall_time_s', 'train_steps_per_s')


def _env(**extra):
  env = dict(os.environ, AELAB_DATA_DIR=str(DATA), JAX_PLATFORMS='cpu')
  env.pop('SLURM_ARRAY_TASK_ID', None)
  return {**env, **extra}


def _argv(workdir, *args, spec=SPARSE):
  return [sys.executable, '-m', 'aelab.sweep', f'--config={spec}', f'--workdir={workdir}', *args]


def _sweep(workdir, *args, spec=SPARSE, timeout=300):
  return subprocess.run(_argv(workdir, *args, spec=spec), cwd=ROOT, env=_env(),
                        capture_output=True, text=True, timeout=timeout)


def _csv(workdir):
  with open(workdir / 'results.csv', newline='') as f:
    return list(csv.DictReader(f))


def _metrics_only(rows):
  return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def _one_line_error(result) -> str:
  lines = result.stderr.splitlines()
  assert result.returncode == 2 and len(lines) == 1, result.stderr
  assert lines[0].startswith('aelab: error: ')
  return lines[0][len('aelab: error: '):]


@pytest.fixture
def refused(capsys, monkeypatch):
  """refused(workdir, *args, spec=...): the one-line error (after 'aelab: error: ') of a sweep
  that stops with exit code 2 before any point runs, through the sweep CLI's own path in this
  process (as tests/test_fuzz.py does): a subprocess would add only Python's and jax's start-up."""
  from aelab.sweep import __main__ as sweep_cli
  monkeypatch.chdir(ROOT)  # the config path as the subprocesses give it

  def run(workdir, *args, spec=SPARSE):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
      sweep_cli.run([f'--config={spec}', f'--workdir={workdir}', *args])
    out = capsys.readouterr()
    return _one_line_error(subprocess.CompletedProcess([], exited.value.code, out.out, out.err))
  return run


@pytest.fixture(scope='module')
def swept(tmp_path_factory):
  """One unbroken 2 x 2 sweep, two points at a time; many tests read it."""
  workdir = tmp_path_factory.mktemp('sweep') / 'kl'
  t0 = time.time()
  result = _sweep(workdir, *AXES, '--parallel=2')
  assert result.returncode == 0, result.stderr
  return workdir, result, time.time() - t0


# --- declarations, axes, names --------------------------------------------------------------

def test_product_zip_and_chain_build_points_in_a_stable_order():
  a, b = sweeps.sweep('a', [1, 2]), sweeps.sweep('x.b', ['u', 'v', 'w'])
  assert sweeps.product(a, b) == [{'a': 1, 'x.b': 'u'}, {'a': 1, 'x.b': 'v'}, {'a': 1, 'x.b': 'w'},
                                  {'a': 2, 'x.b': 'u'}, {'a': 2, 'x.b': 'v'}, {'a': 2, 'x.b': 'w'}]
  assert sweeps.zipit(a, sweeps.sweep('c', [3, 4])) == [{'a': 1, 'c': 3}, {'a': 2, 'c': 4}]
  assert sweeps.chain(a, b[:1]) == [{'a': 1}, {'a': 2}, {'x.b': 'u'}]
  with pytest.raises(AelabError, match=r'zipit: the sweeps have different lengths \[2, 3\]'):
    sweeps.zipit(a, b)
  with pytest.raises(AelabError, match='product: a is swept twice'):
    sweeps.product(a, a)
  with pytest.raises(AelabError, match='give a non-empty list of values'):
    sweeps.sweep('a', [])


def test_names_are_readable_unique_and_file_system_safe():
  pts = sweeps.product(sweeps.sweep('loss.kl_sparsity.weight', [0.3, 1.0, 1e-5]),
                       sweeps.sweep('loss.weight_decay.weight', [3e-3]),
                       sweeps.sweep('model.hidden', [(256, 8)]), sweeps.sweep('seed', [0, 1]))
  names = naming.names(pts)
  assert names[:3] == ['kl_sparsity.weight=0.3,seed=0', 'kl_sparsity.weight=0.3,seed=1',
                       'kl_sparsity.weight=1,seed=0']
  assert names[4] == 'kl_sparsity.weight=1e-05,seed=0' and len(set(names)) == 6
  assert naming.labels(['loss.kl_sparsity.weight', 'loss.weight_decay.weight', 'seed']) == {
      'loss.kl_sparsity.weight': 'kl_sparsity.weight', 'loss.weight_decay.weight':
      'weight_decay.weight', 'seed': 'seed'}
  assert naming.names([{'model.hidden': (256, 8)}]) == ['hidden=256x8']  # nothing varies: all
  assert naming.names([{'model.activation': 'tanh,sigmoid'}, {'model.activation': 'a b/c'}]) == [
      'activation=tanh_sigmoid', 'activation=a_b_c']
  assert naming.names([{}]) == ['base']
  long = naming.names([{'a': 'x' * 200}, {'a': 'x' * 199}])
  assert [len(n) for n in long] == [120, 120] and long[0] != long[1]
  with pytest.raises(AelabError, match="sweep points 0 and 1 get the same name 'activation=a_b'"):
    naming.names([{'model.activation': 'a/b'}, {'model.activation': 'a b'}])


def test_command_line_axes_are_typed_as_config_overrides_are():
  config = experiment('mnist_ae')
  assert axes.parse(['optimizer.learning_rate=1,3e-4', 'seed=0,1'], config) == [
      {'optimizer.learning_rate': 1.0, 'seed': 0}, {'optimizer.learning_rate': 1.0, 'seed': 1},
      {'optimizer.learning_rate': 3e-4, 'seed': 0}, {'optimizer.learning_rate': 3e-4, 'seed': 1}]
  assert axes.parse(['model.hidden=(256,2), (256, 8),(4,)'], config) == [
      {'model.hidden': (256, 2)}, {'model.hidden': (256, 8)}, {'model.hidden': (4,)}]
  assert axes.parse(['model.activation=relu;tanh,sigmoid'], config) == [
      {'model.activation': 'relu'}, {'model.activation': 'tanh,sigmoid'}]
  assert axes.parse(['model.tied=true,False'], config) == [{'model.tied': True},
                                                            {'model.tied': False}]
  with pytest.raises(AelabError) as e:
    axes.parse(['seed=0,x'], config)
  assert str(e.value) == "--config.seed='x': seed is an int (now 0)"
  with pytest.raises(AelabError, match="write --sweep='FIELD=V1,V2,...'"):
    axes.parse(['seed'], config)
  pts = points.build(config, axes.parse(['model.hidden=(256,2),(256,8)', 'seed=0,1'], config))
  assert [(p.index, p.name) for p in pts] == [
      (0, 'hidden=256x2,seed=0'), (1, 'hidden=256x2,seed=1'), (2, 'hidden=256x8,seed=0'),
      (3, 'hidden=256x8,seed=1')]
  assert pts[3].args == ('--config.model.hidden=(256,8)', '--config.seed=1')


def test_points_are_checked_before_anything_runs():
  config = experiment('mnist_ae')
  with pytest.raises(AelabError, match='points 0 and 1 are the same'):
    points.build(config, [{'seed': 1}, {'seed': 1}])
  with pytest.raises(AelabError, match='--config.seed=3 sets a field the sweep sweeps'):
    points.build(config, [{'seed': 1}, {'seed': 2}], ['--config.seed=3'])
  with pytest.raises(AelabError) as e:
    points.build(config, [{'model.hidden': 8}])
  assert str(e.value).startswith('config.model.hidden = 8: model.hidden is a tuple')


def test_an_unknown_field_stops_the_sweep_with_the_runs_message_and_writes_nothing(tmp_path):
  run = subprocess.run([sys.executable, '-m', 'aelab.run', f'--config={SPARSE}',
                        f'--workdir={tmp_path / "run"}', '--config.loss.kl_sparsity.wieght=1'],
                       cwd=ROOT, env=_env(), capture_output=True, text=True)
  result = _sweep(tmp_path / 'sweep', '--file_sweep=false', '--sweep=seed=0,1',
                  '--sweep=loss.kl_sparsity.wieght=1,2')
  assert _one_line_error(result) == _one_line_error(run) == (
      "unknown config field 'config.loss.kl_sparsity.wieght'; valid fields of loss.kl_sparsity: "
      'layer, rho, weight')
  file = tmp_path / 'bad_sweep.py'
  file.write_text('from aelab.config import files\n'
                  f'def get_config(arg=None):\n  return files.load({SPARSE!r})\n'
                  "def get_sweep(arg=None):\n  return [{'seed': 1}, {'model.hiden': (8,)}]\n")
  result = _sweep(tmp_path / 'sweep', spec=str(file))
  assert _one_line_error(result).startswith("unknown config field 'config.model.hiden'")
  assert not (tmp_path / 'sweep').exists() and not (tmp_path / 'run').exists()


def test_load_sweep_reads_get_sweep_with_one_line_errors(tmp_path):
  file = tmp_path / 'exp.py'
  file.write_text('def get_config(arg=None):\n  return None\n'
                  'def get_sweep(arg=None):\n  return [{"seed": int(arg)}] if arg else 3\n')
  assert files.load_sweep(f'{file}:7') == [{'seed': 7}]
  with pytest.raises(AelabError, match=r'get_sweep\(None\): expected a list of points'):
    files.load_sweep(str(file))
  assert files.load_sweep(str(ROOT / 'experiments' / 'tabular_ae.py')) is None


def test_the_sweep_cli_and_the_declarations_import_no_jax():
  code = ('import sys, aelab.sweep.__main__, aelab.config.sweeps; '
          'print(sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "flax", "optax")))')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
  assert out.stdout == '[]\n', out.stderr


def test_list_and_count_print_the_stable_indices(tmp_path):
  listed = _sweep(tmp_path / 'x', *AXES, '--list')
  assert listed.returncode == 0, listed.stderr
  assert listed.stdout.splitlines() == [
      f'{i}  {name:<17}  --config.loss.kl_sparsity.weight={w} --config.seed={s}'
      for i, (name, w, s) in enumerate(zip(NAMES, ['0.3', '0.3', '3.0', '3.0'], [0, 1, 0, 1]))]
  assert _sweep(tmp_path / 'x', *AXES, '--count').stdout == '4\n'
  assert not (tmp_path / 'x').exists()


def test_cli_flags_can_be_bools_and_repeated():
  flags = (cli.Flag('sweep', str, None, 'axis', repeat=True), cli.Flag('list', bool, False, 'l'))
  got = {}
  run = lambda config, values, spec, overrides: got.update(vars(values))  # noqa: E731
  argv = [f'--config={SPARSE.replace("experiments", str(ROOT / "experiments"))}']
  cli.main(argv + ['--sweep=a=1', '--list', '--sweep', 'b=2'], prog='p', doc='', flags=flags,
           run=run)
  assert got == {'sweep': ['a=1', 'b=2'], 'list': True}
  cli.main(argv + ['--list=false'], prog='p', doc='', flags=flags, run=run)
  assert got == {'sweep': [], 'list': False}
  assert '[--sweep=SWEEP] ... [--list]' in cli.help_text('p', '', flags)


# --- a real sweep -------------------------------------------------------------------------------

def test_sweep_runs_every_point_and_the_table_holds_their_summaries(swept):
  workdir, result, _ = swept
  rows = _csv(workdir)
  assert [r['name'] for r in rows] == NAMES and [r['index'] for r in rows] == ['0', '1', '2', '3']
  assert [r['loss.kl_sparsity.weight'] for r in rows] == ['0.3', '0.3', '3.0', '3.0']
  assert {r['status'] for r in rows} == {'done'}
  for row, name in zip(rows, NAMES):
    run = json.loads((workdir / name / 'summary.json').read_text())
    assert run['step'] == 20
    for split in ('val', 'test'):
      for metric, value in run[split].items():
        assert float(row[f'{split}/{metric}']) == value
    assert float(row['wall_time_s']) == run['wall_time_s']
    point = json.loads((workdir / name / 'sweep_point.json').read_text())
    assert point['command'][1:] == ['-m', 'aelab.run', f'--config={SPARSE}',
                                    f'--workdir={workdir / name}', '--config.train.num_steps=20',
                                    '--config.evals.plots.every=-1', *point['args']]
  assert [r['test/loss'] for r in rows] != [rows[0]['test/loss']] * 4  # the points differ
  record = json.loads((workdir / 'sweep.json').read_text())
  assert record['config'] == SPARSE and [p['name'] for p in record['points']] == NAMES
  assert (workdir / 'plots' / 'test_loss_vs_weight.png').stat().st_size > 1000
  assert 'aelab: sweep of 4 points: 4 done.' in result.stdout


def test_results_md_is_a_rounded_table(swept):
  workdir = swept[0]
  lines = (workdir / 'results.md').read_text().splitlines()
  header = lines[4].split(' | ')
  assert header[:5] == ['| index', 'name', 'weight', 'seed', 'status'] and 'test/loss' in header
  row = _csv(workdir)[2]
  cells = lines[8].split(' | ')
  assert cells[:5] == ['| 2', 'weight=3,seed=0', '3', '0', 'done']
  assert cells[header.index('test/loss')] == format(float(row['test/loss']), '.4g')
  assert lines[2] == '4 points: 4 done'


def test_rerunning_a_finished_sweep_runs_nothing(swept, refused):
  workdir = swept[0]
  before = {n: (workdir / n / 'summary.json').stat().st_mtime_ns for n in NAMES}
  result = _sweep(workdir, *AXES, '--parallel=2')
  assert result.returncode == 0, result.stderr
  assert {n: (workdir / n / 'summary.json').stat().st_mtime_ns for n in NAMES} == before
  other = refused(workdir, *AXES[:-2], '--config.train.num_steps=21', '--index=0')
  assert 'holds a sweep with the --config.* overrides' in other


def test_a_failing_point_fails_alone_with_its_one_line_error(tmp_path):
  workdir = tmp_path / 'lr'
  args = ('--file_sweep=false', '--sweep=optimizer.learning_rate=0.001,1e30', *AXES[3:],
          '--parallel=2')
  result = _sweep(workdir, *args)
  assert result.returncode == 1, result.stderr
  message = ('training stopped: the loss is inf at step 1 (lower optimizer.learning_rate or set '
             'optimizer.grad_clip); no checkpoint was saved before it')
  assert f'aelab: point 1 (learning_rate=1e+30) failed: {message}' in result.stderr
  assert (workdir / 'learning_rate=1e+30' / 'error.txt').read_text() == message + '\n'
  rows = _csv(workdir)
  assert [(r['status'], r['error']) for r in rows] == [('done', ''), ('failed', message)]
  assert f'- 1 `learning_rate=1e+30`: {message}' in (workdir / 'results.md').read_text()
  done = (workdir / 'learning_rate=0.001' / 'summary.json').stat().st_mtime_ns
  again = _sweep(workdir, *args)  # reruns the failed point only
  assert again.returncode == 1 and again.stderr.count('failed:') == 1
  assert (workdir / 'learning_rate=0.001' / 'summary.json').stat().st_mtime_ns == done


def test_a_point_a_run_would_refuse_stops_the_sweep_before_anything_is_written(tmp_path, refused):
  """Every point's config is checked as its run will check it, before any point runs."""
  workdir = tmp_path / 'bad'
  for axis, message in (('train.batch_size=50,-1', 'point 1 (batch_size=-1): train.batch_size = '
                         '-1; it must be an integer >= 0'),
                        ('model.hidden=(16,4),(16,0)', 'point 1 (hidden=16x0): '
                         'model.hidden[1] = 0; it must be an integer >= 1'),
                        ('optimizer.name=adam,adamm', "point 1 (name=adamm): unknown optimizer "
                         "'adamm'")):
    assert message in refused(workdir, '--file_sweep=false', f'--sweep={axis}', *AXES[3:])
    assert not workdir.exists()


def test_a_sweep_will_not_write_into_a_runs_workdir(tmp_path, refused):
  run = tmp_path / 'run'
  run.mkdir()
  (run / 'config.json').write_text('{}')
  result = refused(run, '--file_sweep=false', '--sweep=seed=0,1', *AXES[3:])
  assert 'holds a run (config.json, checkpoints/), not a sweep' in result
  assert sorted(p.name for p in run.iterdir()) == ['config.json']


def test_kill_9_of_the_sweep_then_rerun_finishes_only_what_was_missing(swept, tmp_path):
  workdir = tmp_path / 'killed'
  proc = subprocess.Popen(_argv(workdir, *AXES, '--parallel=2'), cwd=ROOT, env=_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 120
  while time.time() < deadline and not (
      any((workdir / n / 'summary.json').exists() for n in NAMES[:2])
      and (workdir / NAMES[2] / 'sweep_point.json').exists()):
    time.sleep(0.05)
  time.sleep(0.5)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  while time.time() < deadline and any(layout.locked(workdir / n) for n in NAMES):
    time.sleep(0.1)  # the orphaned runs got SIGTERM when the sweep died: they checkpoint and exit
  before = {n: (workdir / n / 'summary.json').stat().st_mtime_ns for n in NAMES
            if (workdir / n / 'summary.json').exists()}
  assert 1 <= len(before) < 4
  result = _sweep(workdir, *AXES, '--parallel=2')
  assert result.returncode == 0, result.stderr
  assert {n: (workdir / n / 'summary.json').stat().st_mtime_ns for n in before} == before
  assert result.stdout.count(' done in ') == 4 - len(before)
  assert _metrics_only(_csv(workdir)) == _metrics_only(_csv(swept[0]))


def test_sigterm_to_the_sweep_reaches_its_runs_once_and_exits_75(tmp_path):
  workdir = tmp_path / 'stopped'
  steps = 1000  # about 3 s of training here: the signal comes as the progress bar first shows
  args = (*AXES[:3], f'--config.train.num_steps={steps}', '--config.train.checkpoint_every=0',
          *AXES[4:], '--index=2')
  proc = subprocess.Popen(_argv(workdir, *args), cwd=ROOT, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline, log = time.time() + 60, workdir / NAMES[2] / 'run.log'
  while time.time() < deadline and 'step/s' not in (log.read_text() if log.exists() else ''):
    time.sleep(0.05)  # training has begun
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 75, err
  text = log.read_text()
  assert 'aelab: stopped by SIGTERM' in text and 'second SIGTERM' not in text
  assert 'aelab: point 2 (weight=3,seed=0) interrupted (exit code 75)' in err
  assert layout.status(workdir / NAMES[2]) == 'interrupted'
  stopped = int(text.split('aelab: stopped by SIGTERM at step ')[1].split('/')[0])
  assert 0 < stopped < steps
  assert _sweep(workdir, *args).returncode == 0  # resumes from the checkpoint of the stop
  summary = json.loads((workdir / NAMES[2] / 'summary.json').read_text())
  assert (summary['step'], summary['resumed_from_step']) == (steps, stopped)


def test_index_tasks_in_two_processes_then_summarize_give_the_same_table(swept, tmp_path,
                                                                        refused):
  workdir = tmp_path / 'array'
  plain = subprocess.Popen(_argv(workdir, *AXES, '--index=0'), cwd=ROOT, env=_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  script = subprocess.run(  # the SLURM script as plain bash, one task, no sbatch on the PATH
      ['bash', 'launch/sweep_slurm.sh', SPARSE, str(workdir), *AXES], cwd=ROOT,
      env=_env(SLURM_ARRAY_TASK_ID='3', PYTHON=sys.executable, PATH='/usr/bin:/bin'),
      capture_output=True, text=True, timeout=300)
  assert plain.wait(timeout=300) == 0 and script.returncode == 0, script.stderr
  assert 'aelab: point 3 (weight=3,seed=1) done' in script.stdout
  assert sorted(p.name for p in workdir.iterdir() if p.is_dir()) == [NAMES[0], NAMES[3]]
  result = _sweep(workdir, *AXES, '--summarize')
  assert result.returncode == 0 and 'sweep of 4 points: 2 done, 2 pending' in result.stdout
  rows, reference = _metrics_only(_csv(workdir)), _metrics_only(_csv(swept[0]))
  assert [rows[0], rows[3]] == [reference[0], reference[3]]
  assert [r['status'] for r in rows] == ['done', 'pending', 'pending', 'done']
  assert refused(workdir, *AXES, '--index=4').startswith('--index=4: the sweep has 4 points (0-3)')


def test_the_slurm_script_needs_a_task_id(tmp_path):
  result = subprocess.run(['bash', 'launch/sweep_slurm.sh', SPARSE, str(tmp_path / 'x')],
                          cwd=ROOT, env=_env(PATH='/usr/bin:/bin'), capture_output=True, text=True)
  assert result.returncode == 2 and 'SLURM_ARRAY_TASK_ID is not set' in result.stderr


# --- summary pieces -----------------------------------------------------------------------------

def test_plots_average_over_seeds_with_the_min_max_spread():
  rows = [{'status': 'done', 'overrides': {'w': w, 'rho': r, 'seed': s},
           'metrics': {'m': w * 10 + r + s}}
          for w in (0.1, 10.0) for r in (1, 2) for s in (0, 1, 2)]
  labels = naming.labels(['w', 'rho', 'seed'])
  series, categories, seeds = figures._series(rows, ['w', 'rho', 'seed'], 'w', ['m'], labels)
  assert categories is None and seeds == 3
  assert [s['label'] for s in series] == ['rho=1', 'rho=2']
  assert series[0] == {'label': 'rho=1', 'x': [0.1, 10.0], 'mean': [3.0, 102.0],
                       'low': [2.0, 101.0], 'high': [4.0, 103.0],
                       'points': [(0.1, 2.0), (0.1, 3.0), (0.1, 4.0), (10.0, 101.0),
                                  (10.0, 102.0), (10.0, 103.0)]}   # each run, for its dot
  assert summary.flatten({'step': 3, 'test': {'mse': 0.5, 'note': 'x'}}) == {'test/mse': 0.5}


def test_seed_groups_hold_points_equal_but_for_the_seed():
  config = experiment('mnist_ae')
  pts = points.build(config, sweeps.product(sweeps.sweep('optimizer.learning_rate', [1e-3, 3e-3]),
                                            sweeps.sweep('seed', [0, 1, 2])))
  assert [[p.index for p in g] for g in groups.plan(pts, True, 2)] == [[0, 1], [2], [3, 4], [5]]
  assert [[p.index for p in g] for g in groups.plan(pts, False, 8)] == [[i] for i in range(6)]


def test_seeds_together_trains_a_group_as_separate_runs_would(swept, tmp_path):
  """The swept sweep's first group (weight 0.3, seeds 0 and 1) in one process: each point's
  figures are those of its separate run. (Which points form a group: the test above.)"""
  workdir = tmp_path / 'together'
  result = _sweep(workdir, '--file_sweep=false', '--sweep=loss.kl_sparsity.weight=0.3', *AXES[2:],
                  '--seeds_together')
  assert result.returncode == 0, result.stderr
  rows, reference = _metrics_only(_csv(workdir)), _metrics_only(_csv(swept[0]))[:2]
  assert [(r['loss.kl_sparsity.weight'], r['seed'], r['status']) for r in rows] == [
      ('0.3', '0', 'done'), ('0.3', '1', 'done')]
  assert json.loads((workdir / rows[0]['name'] / 'sweep_point.json').read_text())['group'] == [0, 1]
  for got, want in zip(rows, reference):
    for key, value in want.items():
      if '/' in key:  # every metric
        assert got[key] == value or float(got[key]) == pytest.approx(float(value), rel=1e-5), key


@pytest.mark.filterwarnings('ignore:os.fork:RuntimeWarning')  # this test process imported jax
def test_a_failing_group_runs_its_points_one_by_one(tmp_path):
  """A group trained together fails as a whole (one seed diverging stops them all): its points
  then run alone, so only the point that fails alone is marked failed."""
  from aelab.sweep import runner
  config = experiment('mnist_ae')
  pts = points.build(config, sweeps.sweep('seed', [0, 1, 2]))
  script = ('import json, pathlib, sys\n'
            'dirs = [pathlib.Path(d) for d in sys.argv[1:]]\n'
            'if len(dirs) > 1 or dirs[0].name.endswith("1"):\n'
            '  print("aelab: error: the loss is nan at step 7"); sys.exit(2)\n'
            'dirs[0].joinpath("summary.json").write_text(json.dumps({"step": 5}))\n')
  command = lambda group: [sys.executable, '-c', script, *(str(tmp_path / p.name) for p in group)]  # noqa: E731
  outcome = runner.Runner(tmp_path, command, len(pts)).run(groups.plan(pts, True, 8), parallel=1)
  assert outcome.status == {0: 'done', 1: 'failed', 2: 'done'}
  assert (tmp_path / pts[1].name / layout.ERROR_FILE).read_text() == 'the loss is nan at step 7\n'


# --- the experiments' reference sweeps ------------------------------------------------------------

def _reference(spec):
  spec = str(ROOT / 'experiments' / spec)
  config = files.load(spec)
  return points.build(config, files.load_sweep(spec), (), points.Variants(spec, config, ()))


def test_reference_sweeps_validate_against_their_configs():
  kl = _reference('sparse_kl_mnist.py:tiny')
  assert len(kl) == 27 and kl[13].name == 'weight=3,rho=0.05,seed=1'
  assert [p.overrides for p in kl] == [p.overrides for p in _reference('sparse_kl_mnist.py')]
  noise = _reference('denoising_mnist.py:plain,tiny')
  assert len(noise) == 12 and noise[5].name == 'corruption=masking,level=0.25'
  for p in noise:
    kind, level = p.overrides['input_noise.corruption'], p.overrides['input_noise.level']
    assert 0 < level <= (1.0 if kind == 'gaussian' else 0.75)
  code = _reference('mnist_ae.py')
  assert [p.overrides for p in code] == [{'model.hidden': (256, c)} for c in (2, 8, 32, 128)]
  table = _reference('generative_mnist.py')
  counts = {}
  for p in table:
    counts[p.variant] = counts.get(p.variant, 0) + 1
  assert len(counts) == 12 and counts['model=vae'] == counts['model=vampprior'] == 3
  assert counts['model=iwae50'] == 1 and table[10].describe() == ':model=iwae50 --config.seed=0'
  assert len(_reference('generative_mnist.py:fashion')) == 12


def test_a_variant_axis_runs_each_point_as_its_variant_of_the_config_file(tmp_path, refused):
  """wae_rae_mnist's sweep of its four models ('arg'): each point runs
  --config=FILE:tiny,model=X, with its own loss (one point run, as a task of a job array)."""
  spec = 'experiments/wae_rae_mnist.py:tiny'
  args = ('--config.train.num_steps=10', '--config.evals.plots.every=-1')
  listed = _sweep(tmp_path / 'v', *args, '--list', spec=spec)
  assert listed.stdout.splitlines()[1].split()[1:] == ['arg=model_rae_l2', ':model=rae_l2']
  result = _sweep(tmp_path / 'v', *args, '--index=2', spec=spec)   # RAE-GP
  assert result.returncode == 0, result.stderr
  assert _sweep(tmp_path / 'v', *args, '--summarize', spec=spec).returncode == 0
  rows = _csv(tmp_path / 'v')
  assert [r['arg'] for r in rows] == [f'model={m}' for m in ('wae', 'rae_l2', 'rae_gp', 'ae')]
  assert [r['status'] for r in rows] == ['pending', 'pending', 'done', 'pending']
  point = json.loads((tmp_path / 'v' / rows[2]['name'] / 'sweep_point.json').read_text())
  assert point['command'][3] == f'--config={spec},model=rae_gp'
  loss = json.loads((tmp_path / 'v' / rows[2]['name'] / 'config.json').read_text())['loss']
  assert 'decoder_gradient' in loss and 'mmd' not in loss
  bad = refused(tmp_path / 'b', '--list', '--config.train.num_steps=10',
                spec='experiments/wae_rae_mnist.py:model=vae')
  assert "unknown variant model='vae'" in bad


def test_the_table_over_seeds_has_each_settings_mean_and_spread():
  def row(arg, seed, loss, status='done'):
    return {'overrides': {'arg': arg, 'seed': seed}, 'status': status,
            'metrics': {'test/loss': loss, 'test/mse': loss / 10}, 'wall_time_s': 10.0 + seed,
            'train_steps_per_s': 100.0}
  table = [row('model=a', 0, 1.0), row('model=a', 1, 2.0), row('model=a', 2, 9.0, 'failed'),
           row('model=b', 0, 5.0)]
  text = summary.over_seeds(table, ['arg', 'seed'], ['test/loss'])
  lines = text.strip().splitlines()
  assert lines[2] == '| arg | seeds | test/loss | wall time (s) | steps/s |'
  assert lines[4] == (f'| model=a | 2 | 1.5 ± {2 ** -0.5:.2g} [1, 2] | 10.5 ± 0.71 [10.0, 11.0] '
                      '| 100.0 ± 0 [100.0, 100.0] |')
  assert lines[5] == '| model=b | 1 | 5 | 10.0 | 100.0 |'


def test_code_size_sweep_puts_pca_beside_the_autoencoder(tmp_path):
  spec = 'experiments/mnist_ae.py:pca,tiny'
  assert [p.name for p in _reference('mnist_ae.py:pca,tiny')][:2] == [
      'hidden=256x2,components=2', 'hidden=256x8,components=8']
  result = _sweep(tmp_path / 'code', '--index=1', '--config.evals.plots.every=-1', spec=spec)
  assert result.returncode == 0, result.stderr
  result = _sweep(tmp_path / 'code', '--summarize', '--metric=test/mse,test/pca_mse', spec=spec)
  row = _csv(tmp_path / 'code')[1]
  assert row['status'] == 'done' and float(row['test/pca_components']) == 8
  assert 0 < float(row['test/pca_mse']) < 0.1 and 0 < float(row['test/mse']) < 0.1
  assert (tmp_path / 'code' / 'plots' / 'test_mse+test_pca_mse_vs_components.png').exists()
