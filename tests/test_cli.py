"""`python -m aelab.run` as a user meets it: one-line errors, nothing written on bad input
(stops, kills and corrupt checkpoints: tests/test_faults.py)."""

import os
import subprocess
import sys

import pytest

from conftest import DATA, ROOT


def _env(**extra):
  env = dict(os.environ, AELAB_DATA_DIR=str(DATA), JAX_PLATFORMS='cpu')
  env.update(extra)
  return env


def _run(*args, env=None, timeout=120):
  return subprocess.run([sys.executable, '-m', 'aelab.run', *args], cwd=ROOT, env=env or _env(),
                        capture_output=True, text=True, timeout=timeout)


def _tiny(workdir, *overrides):
  return ('--config=experiments/mnist_ae.py:tiny', f'--workdir={workdir}', *overrides)


@pytest.mark.parametrize('override,message', [
    ('--config.model.foo=3', "unknown config field 'config.model.foo'; valid fields of model: "
                             'activation, decoder, decoder_activation, hidden, mirror, name, '
                             'output_activation, tied'),
    ('--config.modle.hidden=(8,)', "unknown config field 'config.modle.hidden'; valid fields of "
                                   'config: dataset, evals, loss, model, optimizer, preprocessing, '
                                   'seed, train'),
    ('--config.model.hidden=(32,0)', 'model.hidden[1] = 0; it must be an integer >= 1 (model.hidden = '
                                     '(32, 0))'),
    ('--config.optimizer.name=adamax', "unknown optimizer 'adamax'; valid choices: adam, adamw, sgd"),
    ('--config.preprocessing=zscore', 'zscore'),
    ('--config.train.keep_checkpoints=0', 'train.keep_checkpoints = 0; it must be an integer >= 1'),
    ('--config.train.keep_checkpoints=-1', 'train.keep_checkpoints = -1; it must be an integer >= 1'),
    ('--config.evals.val.batch_size=0', 'evals.val.batch_size = 0; it must be an integer >= 1'),
    ('--config.optimizer.learning_rate=nan', 'optimizer.learning_rate = nan; it must be a finite '
                                             'number > 0'),
    ('--config.evals.val.every=-5', 'evals.val.every = -5; it must be an integer >= -1 (N > 0'),
])
def test_bad_config_is_one_clear_line_and_writes_nothing(tmp_path, capsys, override, message):
  """In this process (the CLI's own path, without an interpreter and jax to start per case; the
  tests below run the real command line)."""
  from aelab import run
  workdir = tmp_path / 'run'
  with pytest.raises(SystemExit) as exited:
    run.run(list(_tiny(workdir, override)))
  err = capsys.readouterr().err
  assert exited.value.code == 2, err
  assert 'Traceback' not in err
  assert err.startswith('aelab: error: ') and message in err
  assert len(err.strip().splitlines()) == 1
  assert not workdir.exists()


def _one_line_error(result) -> str:
  """The message of a CLI error: exit code 2, exactly one stderr line `aelab: error: ...`."""
  lines = result.stderr.splitlines()
  assert result.returncode == 2 and len(lines) == 1, result.stderr
  assert lines[0].startswith('aelab: error: ')
  return lines[0][len('aelab: error: '):]


def test_wrong_type_names_the_field(tmp_path):
  message = _one_line_error(_run(*_tiny(tmp_path / 'run', '--config.train.batch_size=abc')))
  assert message == "--config.train.batch_size='abc': train.batch_size is an int (now 50)"
  message = _one_line_error(_run(*_tiny(tmp_path / 'run', '--config.optimizer.learning_rate',
                                        'fast')))
  assert message.startswith("--config.optimizer.learning_rate='fast': optimizer.learning_rate is "
                            'a float')
  assert not (tmp_path / 'run').exists()


def test_broken_config_files_are_one_line(tmp_path):
  syntax = tmp_path / 'syntax.py'
  syntax.write_text('import ml_collections\ndef get_config(arg=None)\n  return 1\n')
  message = _one_line_error(_run(f'--config={syntax}', f'--workdir={tmp_path / "run"}'))
  assert message == f"{syntax}:2: syntax error: expected ':'"
  raises = tmp_path / 'raises.py'
  raises.write_text('def get_config(arg=None):\n  return 1 / 0\n')
  message = _one_line_error(_run(f'--config={raises}:tiny', f'--workdir={tmp_path / "run"}'))
  assert message == f"{raises}: get_config('tiny') raised ZeroDivisionError: division by zero"
  assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('args,message', [
    (('--config', 'experiments/mnist_ae.py:tiny', '--config.model.widths', '3', '--workdir=w'),
     "unknown config field 'config.model.widths'; valid fields of model: activation, decoder, "
     'decoder_activation, hidden, mirror, name, output_activation, tied'),
    (('--config=experiments/mnist_ae.py:tiny', '--workdir='),
     'argument --workdir: is empty; pass a value, --workdir=WORKDIR'),
    (('--config=experiments/mnist_ae.py:tiny',),
     'the following arguments are required: --workdir'),
    (('--workdir=w',), '--config is required: pass --config=experiments/NAME.py[:ARG]'),
    (('--config=experiments/mnist_ae.py:tiny', '--workdir=w', '--wokrdir=x'),
     'unrecognized arguments: --wokrdir=x'),
    (('--config=experiments/mnist_ae.py:huge', '--workdir=w'),
     "unknown variant 'huge'; valid variants (comma-separated): tiny"),
    (('--config=experiments/nope.py', '--workdir=w'), "config file 'experiments/nope.py' does not"),
])
def test_command_line_errors_are_one_line(args, message):
  assert message in _one_line_error(_run(*args))


@pytest.mark.parametrize('module,flag', [('aelab.run', '--workdir=WORKDIR'),
                                         ('aelab.bench', '[--repeats=REPEATS]')])
@pytest.mark.parametrize('help_flag', ['--help', '-h', '--helpfull'])
def test_help_exits_0_with_the_usage(module, flag, help_flag):
  result = subprocess.run([sys.executable, '-m', module, help_flag], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=60)
  assert result.returncode == 0 and result.stderr == '', result.stderr
  usage = result.stdout.splitlines()[0]
  assert usage.startswith(f'usage: python -m {module} --config=FILE.py[:ARG] ') and flag in usage
  assert '--config.FIELD=VALUE' in result.stdout


def test_missing_dataset_offline_says_what_to_do(tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  result = _run(*_tiny(tmp_path / 'run'), env=_env(AELAB_DATA_DIR=str(empty),
                                                   AELAB_CACHE_DIR=str(tmp_path / 'cache'),
                                                   AELAB_OFFLINE='1'))
  assert result.returncode == 2 and 'Traceback' not in result.stderr
  for needed in ('train-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz', 'AELAB_DATA_DIR'):
    assert needed in result.stderr
  assert not (tmp_path / 'run').exists()


def test_csv_with_a_nan_names_row_and_column(tmp_path):
  table = tmp_path / 'bad.csv'
  rows = (DATA / 'breast_cancer.csv').read_text().splitlines()[:40]
  cells = rows[7].split(',')
  cells[3] = 'nan'
  rows[7] = ','.join(cells)
  table.write_text('\n'.join(rows) + '\n')
  result = _run('--config=experiments/tabular_ae.py:tiny', f'--workdir={tmp_path / "run"}',
                f'--config.dataset.path={table}')
  assert result.returncode == 2 and 'Traceback' not in result.stderr
  assert 'row 8' in result.stderr and 'mean_area' in result.stderr, result.stderr
  assert not (tmp_path / 'run').exists()
