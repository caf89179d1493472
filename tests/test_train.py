"""The trainer end to end on tiny real MNIST: loss falls, workdir contents, exact resume, NaN stop."""

import json

import jax
import numpy as np
import pytest

from aelab.trainer import checkpoint, train
from aelab.trainer.setup import build
from aelab.errors import AelabError
from aelab.trainer.writers import read_jsonl
from conftest import experiment

pytestmark = pytest.mark.quick  # the fast tier: python -m pytest -m quick


def _final_arrays(workdir):
  ckpts = checkpoint.Checkpoints(workdir)
  _, arrays, _ = ckpts.restore_raw()
  ckpts.close()
  return arrays


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('tiny')
  config = experiment('mnist_ae')
  config.train.progress = False
  with pytest.MonkeyPatch.context() as mp:
    from conftest import DATA
    mp.setenv('AELAB_DATA_DIR', str(DATA))
    summary = train.train_and_evaluate(config, workdir)
  return workdir, summary


def test_loss_falls_and_test_metrics_are_reported(tiny_run):
  workdir, summary = tiny_run
  rows = [r for r in read_jsonl(workdir / 'metrics.jsonl') if 'train/loss' in r]
  assert [r['step'] for r in rows] == [20, 40, 60]
  assert rows[-1]['train/loss'] < 0.75 * rows[0]['train/loss']
  test = summary['test']
  # A model that predicts 0.5 everywhere has BCE ln 2 = 0.693; the tiny run is well below it.
  assert test['bce'] < 0.45
  assert test['loss'] == pytest.approx(test['bce'], rel=1e-4)  # bce loss, no preprocessing
  assert 0 < test['mse'] < 0.12
  assert summary['step'] == 60 and summary['param_count'] == 2 * (784 * 32 + 32 * 8) + 32 + 8 + 32 + 784


def test_workdir_holds_every_result(tiny_run):
  workdir, summary = tiny_run
  config = json.loads((workdir / 'config.json').read_text())
  assert config['model']['hidden'] == [32, 8]
  assert json.loads((workdir / 'summary.json').read_text())['test'] == summary['test']
  assert (workdir / 'plots' / 'reconstructions.png').stat().st_size > 1000
  assert list((workdir / 'tensorboard').glob('events.out.tfevents.*'))
  assert checkpoint.Checkpoints(workdir).all_steps() == [30, 60]
  meta_stats = _final_arrays(workdir)['preprocessing']
  assert meta_stats == {}  # 'none' has no statistics


def test_tensorboard_events_are_readable(tiny_run):
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
  workdir, _ = tiny_run
  acc = EventAccumulator(str(workdir / 'tensorboard'))
  acc.Reload()
  steps = [e.step for e in acc.Scalars('train/loss')]
  assert steps == [20, 40, 60]


def test_resumed_run_ends_with_the_same_parameters(tiny_run, tmp_path):
  workdir_full, _ = tiny_run
  config = experiment('mnist_ae')
  config.train.progress = False
  config.evals.plots.every = -1
  out = train.train_and_evaluate(config, tmp_path, should_stop=lambda step: step == 20)
  assert (out['step'], out['interrupted'], out['checkpoint_step']) == (20, 'should_stop', 20)
  assert checkpoint.Checkpoints(tmp_path).latest_step() == 20
  summary = train.train_and_evaluate(config, tmp_path)
  assert summary['resumed_from_step'] == 20 and summary['step'] == 60
  full, resumed = _final_arrays(workdir_full), _final_arrays(tmp_path)
  jax.tree.map(np.testing.assert_array_equal, full['state'], resumed['state'])
  strip = lambda rows: [{k: v for k, v in r.items() if k != 'time'} for r in rows]  # noqa: E731
  assert strip(read_jsonl(tmp_path / 'metrics.jsonl')) == strip(read_jsonl(workdir_full / 'metrics.jsonl'))


def test_resume_refuses_a_different_model(tiny_run):
  workdir, _ = tiny_run
  config = experiment('mnist_ae')
  config.model.hidden = (16, 8)
  with pytest.raises(AelabError, match='differs in model'):
    train.train_and_evaluate(config, workdir)


def test_nonfinite_loss_stops_with_the_step(tmp_path):
  config = experiment('mnist_ae')
  config.train.progress = False
  config.loss.reconstruction.kind = 'mse'
  config.model.output_activation = 'linear'
  config.optimizer.update(name='sgd', learning_rate=1e6, momentum=0.0)
  with pytest.raises(AelabError, match=r'loss is (nan|inf) at step \d+ .*no checkpoint was saved'):
    train.train_and_evaluate(config, tmp_path)


def test_device_and_host_data_paths_train_identically(tiny_run, tmp_path):
  workdir_full, _ = tiny_run  # device_data='auto': the tiny set lives on the device
  config = experiment('mnist_ae')
  config.train.update(progress=False, device_data='no')
  config.evals.plots.every = -1
  train.train_and_evaluate(config, tmp_path)
  full, host = _final_arrays(workdir_full), _final_arrays(tmp_path)
  jax.tree.map(np.testing.assert_array_equal, full['state'], host['state'])


FASHION = '/usr/share/datasets/fashion-mnist'


@pytest.mark.skipif(not __import__('os').path.isdir(FASHION), reason='dataset-fashion-mnist not installed')
def test_fashion_mnist_trains_from_the_debian_files(tmp_path):
  config = experiment('fashion_mnist_ae')
  config.train.progress = False
  config.evals.plots.every = -1
  summary = train.train_and_evaluate(config, tmp_path)
  files = json.loads((tmp_path / 'config.json').read_text())['dataset']
  assert files['name'] == 'fashion_mnist'
  rows = [r for r in read_jsonl(tmp_path / 'metrics.jsonl') if 'train/loss' in r]
  assert rows[-1]['train/loss'] < 0.9 * rows[0]['train/loss']
  assert summary['test']['bce'] < 0.6


def test_loss_weight_warmup_follows_the_train_step(tmp_path):
  config = experiment('vae_mnist')
  config.loss.vae_kl.warmup_steps = 1000  # ramp = step / 1000 < 0.06 over the 60 tiny steps
  config.train.progress = False
  config.evals.plots.every = -1
  config.evals.iwae.samples = 2
  train.train_and_evaluate(config, tmp_path)
  rows = [r for r in read_jsonl(tmp_path / 'metrics.jsonl') if 'train/loss' in r]
  for r in rows:
    ramp_kl = r['train/loss'] - r['train/reconstruction']
    assert 0 < ramp_kl < 0.06 * r['train/vae_kl'], r


def test_bfloat16_compute_keeps_float32_master_weights(tmp_path):
  from aelab.trainer import precision
  config = experiment('mnist_ae')
  config.train.update(progress=False, compute_dtype='bfloat16')
  config.evals.plots.every = -1
  setup = build(config)
  state = setup.init(setup.init_rng)
  batch = {'x': setup.dataset.train.x[:8]}
  jaxpr = str(jax.make_jaxpr(lambda p: setup.forward(p, setup.prep, batch, jax.random.PRNGKey(0),
                                                     True, step=0))(state.params))
  dots = [line for line in jaxpr.splitlines() if 'dot_general' in line]
  assert dots and all('bf16[' in line for line in dots)  # every matmul runs in bfloat16
  summary = train.train_and_evaluate(config, tmp_path)
  final = _final_arrays(tmp_path)['state']['params']
  assert all(a.dtype == np.float32 for a in jax.tree.leaves(final))
  rows = [r for r in read_jsonl(tmp_path / 'metrics.jsonl') if 'train/loss' in r]
  assert rows[-1]['train/loss'] < 0.8 * rows[0]['train/loss']
  assert summary['test']['bce'] < 0.45
  assert precision.for_compute(state.params, np.float32) is state.params


def test_a_run_from_before_new_config_fields_still_resumes(tmp_path):
  """config.json of an older aelab lacks fields added since (model.mirror, optimizer.frozen, ...):
  they held their defaults then, so the run resumes."""
  config = experiment('mnist_ae')
  config.train.progress = False
  config.evals.plots.every = -1
  out = train.train_and_evaluate(config, tmp_path, should_stop=lambda step: step == 30)
  assert out['interrupted'] == 'should_stop'
  saved = json.loads((tmp_path / 'config.json').read_text())
  for group, fields in (('model', ('mirror', 'decoder', 'decoder_activation')),
                        ('optimizer', ('frozen', 'lbfgs_memory', 'lbfgs_linesearch'))):
    for field in fields:
      del saved[group][field]
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  summary = train.train_and_evaluate(config, tmp_path)
  assert summary['resumed_from_step'] == 30 and summary['step'] == 60
  config.model.mirror = False  # a field that did change is still refused
  with pytest.raises(AelabError, match='differs in model'):
    train.train_and_evaluate(config, tmp_path)


def test_a_run_without_a_log_step_before_its_end_still_reports_its_speed(tmp_path):
  """97 steps, logging every 100, no checkpoint between: the clock starts after the first
  (compiling) block, not at the first log step (there is none before the end)."""
  config = experiment('mnist_ae')
  config.train.update(progress=False, num_steps=97, log_every=100, checkpoint_every=0,
                      steps_per_call=10)
  config.evals = dict(test=dict(config.evals.test.to_dict(), every=0))
  summary = train.train_and_evaluate(config, tmp_path / 'run')
  assert summary['train_steps_per_s'] > 0
  assert summary['train_examples_per_s'] == pytest.approx(
      summary['train_steps_per_s'] * config.train.batch_size)
