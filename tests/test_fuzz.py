"""Malformed input to every command line, as a demanding user types it: each case ends with exit
code 2 and ONE line `aelab: error: ...` (no traceback) naming the problem, and leaves every
directory it was pointed at exactly as it was. In-process (the CLIs' own `run(argv)`), so the
table costs seconds, not a process each.

A case is (cli, argv, the words its error must hold); in argv, {tmp} is the case's own empty
directory, {run} a trained mnist_ae:tiny run (the session's, read-only), {copy} a copy of it
that the case may have damaged first (see DAMAGE), {data} tests/data.
"""

import hashlib
import json
import pathlib
import shutil

import numpy as np
import pytest

from aelab import inspect as inspect_cli, run as run_cli
from aelab.analysis import frontier
from aelab.bench import __main__ as bench_cli
from aelab.sweep import __main__ as sweep_cli
from conftest import DATA

pytestmark = pytest.mark.quick  # the fast tier: python -m pytest -m quick

CLIS = {'run': run_cli.run, 'sweep': sweep_cli.run, 'inspect': inspect_cli.run,
        'bench': bench_cli.run, 'frontier': frontier.run}
AE, DEN, VAE, SAE, KL = (f'--config=experiments/{n}.py:tiny' for n in (
    'mnist_ae', 'denoising_mnist', 'vae_mnist', 'sae_toy', 'sparse_kl_mnist'))
W = '--workdir={tmp}/w'


def _run(*args, config=AE):
  """A run case: its flags, then the words its error must hold."""
  *flags, words = args
  return ('run', [config, W, *flags], words)


RUN = [
    ('run', [W], '--config is required'),
    ('run', ['--config=experiments/nope.py', W], "config file 'experiments/nope.py' does not exist"),
    ('run', ['--config=experiments/mnist_ae.py:huge', W], "unknown variant 'huge'"),
    ('run', [AE, '--workdir='], '--workdir: is empty'),
    ('run', [AE], 'the following arguments are required: --workdir'),
    ('run', [AE, W, '--wokrdir={tmp}/w'], 'unrecognized arguments: --wokrdir'),
    ('run', [AE, AE, W], '--config is given twice'),
    ('run', [AE, '--workdir={data}/wine.csv'], 'is a file, not a directory'),
    _run('--config.train.fast=1', "unknown config field 'config.train.fast'"),
    _run('--config.train.batch_size=abc', 'train.batch_size is an int'),
    _run('--config.train.batch_size=-1', 'train.batch_size = -1; it must be an integer >= 0'),
    _run('--config.train.batch_size=100000', 'exceeds the 900 training examples'),
    _run('--config.train.num_steps=-5', 'train.num_steps = -5; it must be an integer >= 0'),
    _run('--config.train.num_steps=99999999999999999999', 'train.num_steps = 99999999999999999999'
         '; it must be an integer in [0, 2**31 - 1]'),
    _run('--config.train.num_steps=0', '--config.train.num_epochs=2000000000',
         'makes 36000000000 steps, more than 2**31 - 1'),
    _run('--config.train.steps_per_call=0', 'train.steps_per_call = 0; it must be an integer >= 1'),
    _run('--config.train.log_every=-1', 'train.log_every = -1'),
    _run('--config.train.checkpoint_every=-3', 'train.checkpoint_every = -3'),
    _run('--config.train.keep_checkpoints=0', 'train.keep_checkpoints = 0'),
    _run('--config.train.device_data=maybe', "unknown train.device_data 'maybe'"),
    _run('--config.train.compute_dtype=float8', "unknown train.compute_dtype 'float8'"),
    _run("--config.train.mesh=(('data', 3),)", 'train.mesh'),
    _run("--config.train.sharding=(('.*', 'shard'),)", 'shard'),
    _run('--config.train.progress=maybe', 'train.progress is a bool'),
    _run('--config.train', 'needs a value'),
    _run('--config.seed=-1', 'seed = -1; it must be an integer >= 0'),
    _run('--config.seed=99999999999999999999999', 'seed = 99999999999999999999999; it must be an '
         'integer in [0, 2**32 - 1]'),
    _run('--config.seed=1.5', 'seed is an int'),
    _run('--config.model=3', 'model is a group'),
    _run('--config.model.hidden=(32,0)', 'model.hidden[1] = 0; it must be an integer >= 1'),
    _run('--config.model.hidden=()', 'model.hidden = (); give at least one hidden width'),
    _run('--config.model.hidden=(32,-4)', 'model.hidden[1] = -4'),
    _run('--config.model.hidden=(99999999999,8)', 'model.hidden[0] = 99999999999; it must be an '
         'integer in [1, 2**31 - 1]'),
    _run('--config.model.activation=swish', "unknown activation 'swish'"),
    _run('--config.model.activation=relu,tanh,sigmoid', "activation 'relu,tanh,sigmoid' names 3 "
         'layers but the encoder has 2'),
    _run('--config.model.output_activation=softmaxx', "unknown activation 'softmaxx'"),
    _run('--config.model.tied=True', '--config.model.mirror=False', 'model.tied needs the mirrored'),
    _run('--config.model.name=mlp', "unknown model 'mlp'; valid choices: classifier, conv"),
    _run('--config.model.name=conv', "unknown fields decoder, decoder_activation, hidden, mirror, "
         "tied in model 'conv'; valid fields: activation, channels"),
    _run('--config.model.mirror=False', '--config.model.decoder=(8,0)', 'model.decoder[1] = 0'),
    _run('--config.loss.reconstruction.weight=nan', "the weight of loss term 'reconstruction' = "
         'nan; it must be a finite number >= 0'),
    _run('--config.loss.reconstruction.weight=inf', "weight of loss term 'reconstruction' = inf"),
    _run('--config.loss.reconstruction.weight=-1', "weight of loss term 'reconstruction' = -1.0"),
    _run('--config.loss.reconstruction.kind=huber', "unknown reconstruction kind 'huber'"),
    _run('--config.loss.reconstruction.reduction=median', "unknown reconstruction reduction"),
    _run('--config.loss.reconstruction.weight=0', 'no active loss term'),
    _run('--config.loss.vae_kl.warmup_steps=-1', "warmup_steps of loss term 'vae_kl' = -1",
         config=VAE),
    _run('--config.loss.reconstruction.kind=gaussian', '--config.loss.reconstruction.reduction=x',
         "unknown reconstruction reduction 'x'"),
    _run('--config.optimizer.name=adamm', "unknown optimizer 'adamm'"),
    _run('--config.optimizer.learning_rate=0', 'optimizer.learning_rate = 0.0; it must be a finite '
         'number > 0'),
    _run('--config.optimizer.learning_rate=nan', 'optimizer.learning_rate = nan'),
    _run('--config.optimizer.learning_rate=-0.001', 'optimizer.learning_rate = -0.001'),
    _run('--config.optimizer.learning_rate=inf', 'optimizer.learning_rate = inf'),
    _run('--config.optimizer.schedule=linear', "unknown optimizer.schedule 'linear'"),
    _run('--config.optimizer.warmup_steps=-1', 'optimizer.warmup_steps = -1'),
    _run('--config.optimizer.grad_clip=-1', 'optimizer.grad_clip = -1.0'),
    _run('--config.optimizer.momentum=nan', 'optimizer.momentum = nan'),
    _run('--config.optimizer.weight_decay=inf', 'optimizer.weight_decay = inf'),
    _run('--config.optimizer.frozen=layer_9', "optimizer.frozen names 'layer_9'"),
    _run('--config.optimizer.frozen=encoder,decoder', 'freezes every parameter'),
    _run('--config.optimizer.name=lbfgs', '--config.optimizer.grad_clip=1',
         'grad_clip does not apply to lbfgs'),
    _run('--config.optimizer.name=lbfgs', '--config.optimizer.lbfgs_memory=0',
         'optimizer.lbfgs_memory = 0'),
    _run('--config.optimizer.name=lbfgs', '--config.optimizer.lbfgs_linesearch=armijo',
         "unknown optimizer.lbfgs_linesearch 'armijo'"),
    _run('--config.evals.val.every=-5', 'evals.val.every = -5'),
    _run('--config.evals.val.batch_size=0', 'evals.val.batch_size = 0'),
    _run('--config.evals.val.split=valid', "unknown split 'valid'"),
    _run('--config.evals.val.type=fid', "unknown evaluator type 'fid'"),
    _run('--config.evals.plots.every=abc', 'evals.plots.every is an int'),
    _run('--config.preprocessing=zscore', 'zscore'),
    _run('--config.dataset.name=imagenet', "unknown dataset 'imagenet'"),
    _run('--config.dataset.val_fraction=1.5', 'dataset.val_fraction = 1.5'),
    _run('--config.dataset.train_limit=-1', 'dataset.train_limit = -1'),
    _run('--config.dataset.path={tmp}/nowhere', 'is not a directory'),
    _run('--config.dataset.name=csv', "dataset 'csv' needs dataset.path"),
    _run('--config.dataset.name=csv', '--config.dataset.path={data}/wine.csv',
         '--config.dataset.label_column=nope', 'nope'),
    _run('--config.dataset.name=npy', '--config.dataset.path={tmp}/nan.npy',
         'row 7, column 1 is nan; every value must be finite'),
    _run('--config.dataset.name=npy', '--config.dataset.path={tmp}/empty.npy',
         "dataset 'npy' has no features"),
    _run('--config.dataset.name=npy', '--config.dataset.path={data}/wine.csv',
         'is not a readable .npy file'),
    _run('--config.dataset.name=npz', '--config.dataset.path={data}/wine.csv',
         'is not an .npz file'),
    _run('--config.dataset.name=activations', 'dataset.run is required'),
    _run('--config.dataset.name=activations', '--config.dataset.run={tmp}/nowhere',
         'is not a trained aelab run'),
    _run('--config.input_noise.level=0.1', "unknown config field 'config.input_noise.level'"),
    _run('--config.input_noise.level=-0.5', 'input_noise.level = -0.5', config=DEN),
    _run('--config.input_noise.corruption=blur', "unknown input_noise.corruption 'blur'",
         config=DEN),
    _run('--config.input_noise.corruption=masking', '--config.input_noise.level=1.5',
         'input_noise.level is the fraction of entries', config=DEN),
    _run('--config.model.latent=0', 'model.latent = 0', config=VAE),
    _run('--config.model.likelihood=poisson', "unknown model.likelihood 'poisson'", config=VAE),
    _run('--config.model.body=mlp', "unknown model.body 'mlp'", config=VAE),
    _run('--config.evals.iwae.samples=0', "iwae evaluator's samples = 0", config=VAE),
    _run('--config.evals.iwae.examples=-1', "iwae evaluator's examples = -1", config=VAE),
    _run('--config.model.k=0', 'model.k = 0', config=SAE),
    _run('--config.model.k=100000', 'model.k = 100000 exceeds model.latents', config=SAE),
    _run('--config.model.activation=gelu', "unknown model.activation of an sae 'gelu'", config=SAE),
    _run('--config.loss.auxk.k=0', 'auxk k = 0', config=SAE),
    _run('--config.model.threshold_decay=1.5', 'model.threshold_decay = 1.5', config=SAE),
    _run('--config.model.bandwidth=0', 'model.bandwidth = 0.0', config=SAE),
    _run('--config.dataset.probability=2', 'dataset.probability', config=SAE),
    _run('--config.model.activation=relu', 'kl_sparsity needs activations in (0, 1)', config=KL),
    _run('--config.loss.kl_sparsity.rho=1.5', 'kl_sparsity rho = 1.5', config=KL),
    _run('--config.loss.kl_sparsity.layer=9', "kl_sparsity's layer '9' is not a layer of this "
         'model; its layers: code, 1', config=KL),
    _run('--coordinator_address=localhost', '--num_processes=2', '--process_id=0',
         'must be HOST:PORT'),
    _run('--num_processes=2', 'go together: give all three'),
    _run('--coordinator_address=h:1', '--num_processes=2', '--process_id=5',
         '--process_id=5 must be in [0, 1]'),
    _run('--peer_timeout=abc', "'abc' is not an int"),
    ('run', [AE, '--workdir={copy}'], 'is not valid JSON'),
]

SWEEP_W = '--workdir={tmp}/s'
SWEEP = [
    ('sweep', [AE, SWEEP_W, '--sweep=seed'], "write --sweep='FIELD=V1,V2,...'"),
    ('sweep', [AE, SWEEP_W, '--sweep=seed=0,,1'], 'an empty value'),
    ('sweep', [AE, SWEEP_W, '--file_sweep=false', '--sweep=model.hidden=(32,8),(32,0)'],
     'point 1 (hidden=32x0): model.hidden[1] = 0'),
    ('sweep', [AE, SWEEP_W, '--sweep=nope.field=1'], "unknown config field 'config.nope.field'"),
    ('sweep', [AE, SWEEP_W, '--sweep=seed=a,b'], 'seed is an int'),
    ('sweep', [AE, SWEEP_W, '--sweep=seed=0,1', '--parallel=0'], '--parallel=0'),
    ('sweep', [AE, SWEEP_W, '--sweep=seed=0,1', '--index=99'], '--index=99'),
    ('sweep', [AE, SWEEP_W, '--sweep=seed=0,1', '--together_by=pmap'], "--together_by='pmap'"),
    ('sweep', [AE, SWEEP_W, '--sweep=seed=0,1', '--seeds_together', '--group_size=0'],
     '--group_size=0'),
    ('sweep', [AE, '--sweep=seed=0,1'], '--workdir is required'),
    ('sweep', [AE, SWEEP_W, '--sweep=seed=0,0'], 'are the same'),
    ('sweep', [AE, SWEEP_W, '--sweep=train.batch_size=50', '--config.train.batch_size=20'],
     'sets a field the sweep sweeps'),
    ('sweep', [AE, '--workdir={run}', '--sweep=seed=0,1'], 'holds a run'),
    ('sweep', [AE, SWEEP_W, '--file_sweep=false', '--sweep=optimizer.learning_rate=0.001,nan'],
     'learning_rate=nan): optimizer.learning_rate = nan; it must be a finite number > 0'),
    ('sweep', [AE, SWEEP_W, '--file_sweep=false', '--sweep=loss.reconstruction.weight=1,-1'],
     "point 1 (weight=-1): the weight of loss term 'reconstruction' = -1.0"),
    ('sweep', [AE, SWEEP_W, '--file_sweep=false', '--sweep=seed=0,99999999999'],
     'point 1 (seed=99999999999): seed'),
    ('sweep', [AE, SWEEP_W, '--sweep=optimizer.name=adam,sgdd'], "unknown optimizer 'sgdd'"),
    ('sweep', [AE, SWEEP_W, '--sweep=evals.val.every=10,-9'], 'evals.val.every = -9'),
    ('sweep', [AE, SWEEP_W, '--sweep=dataset.name=mnist,imagenet'], "unknown dataset 'imagenet'"),
    ('sweep', ['--config=experiments/nope.py', SWEEP_W], 'does not exist'),
]

RUN_W = '--workdir={run}'
INSPECT = [
    ('inspect', [], 'the following arguments are required: VERB'),
    ('inspect', ['look', RUN_W], "invalid choice: 'look'"),
    ('inspect', ['features', '--split=test', '--layer=1', '--out={tmp}/f.csv'],
     'the following arguments are required: --workdir'),
    ('inspect', ['features', '--workdir={tmp}/nowhere', '--split=test', '--layer=1',
                 '--out={tmp}/f.csv'], 'holds no checkpoints'),
    ('inspect', ['features', RUN_W, '--split=test', '--layer=9', '--out={tmp}/f.csv'],
     'unknown layer 9'),
    ('inspect', ['features', RUN_W, '--split=test', '--layer=abc', '--out={tmp}/f.csv'],
     "unknown layer 'abc'"),
    ('inspect', ['features', RUN_W, '--split=test', '--layer=1', '--out={tmp}/f.txt'],
     'name the output file .csv or .npz'),
    ('inspect', ['features', RUN_W, '--split=test', '--layer=1', '--out={data}/wine.csv/f.csv'],
     'is a file, not a directory'),
    ('inspect', ['features', RUN_W, '--input={tmp}/missing.csv', '--layer=1', '--out={tmp}/f.csv'],
     'is not a file'),
    ('inspect', ['features', RUN_W, '--input={data}/wine.csv', '--split=test', '--layer=1',
                 '--out={tmp}/f.csv'], 'not allowed with argument'),
    ('inspect', ['features', RUN_W, '--split=valid', '--layer=1', '--out={tmp}/f.csv'],
     "invalid choice: 'valid'"),
    ('inspect', ['reconstruct', RUN_W, '--split=test', '--space=weird', '--out={tmp}/r.csv'],
     "invalid choice: 'weird'"),
    ('inspect', ['anomaly', RUN_W, '--split=test', '--threshold=1.5', '--out={tmp}/a.csv'],
     'quantile = 1.5'),
    ('inspect', ['anomaly', RUN_W, '--split=test', '--positive=cat', '--out={tmp}/a.csv'],
     "positive class 'cat' is not a label"),
    ('inspect', ['latents', RUN_W, '--split=test', '--out={tmp}/l.csv'],
     'the latents verb needs a sparse dictionary'),
    ('inspect', ['weights', RUN_W, '--out={tmp}/w.csv'], 'weights are many arrays'),
    ('inspect', ['weights', RUN_W, '--out={data}'], 'exists and is not an aelab weights directory'),
    ('inspect', ['features', RUN_W, '--step=999', '--split=test', '--layer=1', '--out={tmp}/f.csv'],
     'has no checkpoint at step 999'),
    ('inspect', ['features', RUN_W, '--step=x', '--split=test', '--layer=1', '--out={tmp}/f.csv'],
     "invalid int value: 'x'"),
    ('inspect', ['features', RUN_W, '--input={data}/wine.csv', '--layer=1', '--out={tmp}/f.csv'],
     'the model was trained on 784'),
    ('inspect', ['features', RUN_W, '--input={tmp}/nan.npz', '--layer=1', '--out={tmp}/f.csv'],
     'every value must be finite'),
    ('inspect', ['features', RUN_W, '--split=test', '--layer=1', '--batch-size=0',
                 '--out={tmp}/f.csv'], 'batch size'),
    ('inspect', ['features', '--workdir={corrupt}', '--split=test', '--layer=1',
                 '--out={tmp}/f.csv'], 'no usable checkpoint'),
]

BENCH = [
    ('bench', ['--config=experiments/bench_dense.py:tiny', '--repeats=0'], '--repeats = 0'),
    ('bench', ['--config=experiments/bench_dense.py:tiny', '--steps=-1'], '--steps'),
    ('bench', ['--config=experiments/bench_dense.py:tiny', '--target_s=0'], '--target_s'),
    ('bench', ['--config=experiments/bench_dense.py:tiny', '--out={data}/wine.csv/b.json'],
     'is a file, not a directory'),
    ('bench', ['--config=experiments/bench_dense.py:tiny', '--out={tmp}'], 'is a directory'),
    ('bench', ['--config=experiments/bench_dense.py:tiny', '--config.train.fast=1'],
     "unknown config field 'config.train.fast'"),
    ('bench', ['--config=experiments/bench_dense.py:batch=0'], "unknown variant 'batch=0'"),
    ('bench', ['--config=experiments/bench_dense.py:tiny', '--repeats=x'], "'x' is not an int"),
]

FRONTIER = [
    ('frontier', ['--out={tmp}/f.png'], 'the following arguments are required: DIR'),
    ('frontier', ['--out={tmp}/f.txt', '{tmp}'], 'written as .png, .pdf or .svg'),
    ('frontier', ['--out={tmp}/f.png', '{tmp}/nowhere'], 'results.csv is missing'),
    ('frontier', ['{tmp}'], 'the following arguments are required: --out'),
]

CASES = RUN + SWEEP + INSPECT + BENCH + FRONTIER


def _tree(*dirs) -> dict:
  """Every file below `dirs` with its sha256 (and every directory): what a case must not change."""
  out = {}
  for d in dirs:
    for p in sorted(pathlib.Path(d).rglob('*')):
      out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else 'dir'
  return out


@pytest.fixture(scope='module')
def places(tiny_mnist_run, tmp_path_factory):
  """The trained run, a copy with a torn config.json and one whose checkpoints are all corrupt."""
  run, _ = tiny_mnist_run
  base = tmp_path_factory.mktemp('fuzz')
  copy = base / 'copy'
  shutil.copytree(run, copy)
  (copy / 'config.json').write_text('{"seed": 0, "dataset"')
  corrupt = base / 'corrupt'
  shutil.copytree(run, corrupt)
  for meta in corrupt.glob('checkpoints/*/meta/metadata'):
    meta.write_text('not json')
  return {'run': str(run), 'copy': str(copy), 'corrupt': str(corrupt)}


def _inputs(tmp: pathlib.Path) -> None:
  bad = np.random.default_rng(0).random((20, 3)).astype(np.float32)
  bad[7, 1] = np.nan
  np.save(tmp / 'nan.npy', bad)
  np.save(tmp / 'empty.npy', np.zeros((20, 0), np.float32))
  np.savez(tmp / 'nan.npz', x=np.full((2, 784), np.nan, np.float32))


@pytest.mark.parametrize('cli,argv,words', CASES,
                         ids=[f'{c}-{i}' for i, (c, _, _) in enumerate(CASES)])
def test_malformed_input_is_one_line_and_changes_nothing(cli, argv, words, places, tmp_path,
                                                         capsys, monkeypatch):
  monkeypatch.chdir(DATA.parents[1])
  _inputs(tmp_path)
  argv = [a.format(tmp=tmp_path, data=DATA, **places) for a in argv]
  watched = (tmp_path, *places.values())
  before = _tree(*watched)
  with pytest.raises(SystemExit) as exit_:
    CLIS[cli](argv)
  out, err = capsys.readouterr()
  assert exit_.value.code == 2, (out, err)
  assert len(err.splitlines()) == 1 and err.startswith('aelab: error: '), err
  assert 'Traceback' not in err + out
  assert words.format(tmp=tmp_path, data=DATA, **places) in err, err
  assert _tree(*watched) == before


def test_the_table_covers_every_cli_a_hundred_times_over():
  assert len(CASES) >= 150 and set(c for c, _, _ in CASES) == set(CLIS)
  assert len({json.dumps(a) for _, a, _ in CASES}) == len(CASES)
