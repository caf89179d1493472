"""The FLOP counter against hand counts, and `python -m aelab.bench` end to end on the tiny config."""

import json
import math
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aelab import losses, models, preprocessing
from aelab.bench import bare, flops, keras_ref
from aelab.config import defaults
from aelab.trainer import sharding
from aelab.trainer.forward import Forward
from aelab.trainer.state import TrainState, make_train_block
from conftest import DATA, ROOT, experiment

DENSE = (784, 512, 32, 512, 784)


def _dense_ae(hidden=(512, 32)):
  cfg = defaults.model('dense', hidden=hidden, activation='relu', output_activation='sigmoid')
  return models.build(cfg, (28, 28, 1))


def _layer_sum(widths) -> int:
  return sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def test_dense_forward_is_two_flops_per_weight_per_example():
  model, batch = _dense_ae(), 256
  x = jnp.zeros((batch, 28, 28, 1))
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x[:1])
  assert flops.count(model.apply, params, x) == 2 * batch * _layer_sum(DENSE)


def test_dense_grad_step_is_six_per_weight_less_the_first_input_gradient():
  """Forward 2, weight gradient 2, input gradient 2 per weight and example; autodiff skips the
  input gradient of the first layer (the data is not differentiated): 6 B sum - 2 B 784*512."""
  model, batch = _dense_ae(), 256
  x = jnp.zeros((batch, 28, 28, 1))
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x[:1])['params']
  tx = optax.adam(1e-3)
  loss_fn = losses.compose(defaults.loss(reconstruction=dict(weight=1.0, kind='bce')))

  def step(params, opt_state, x):
    def loss(p):
      recon, aux = model.apply({'params': p}, x)
      return loss_fn(losses.Outputs(x=x, recon=recon, aux=aux, params=p))[0]
    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  expected = 6 * batch * _layer_sum(DENSE) - 2 * batch * 784 * 512
  assert flops.count(step, params, jax.eval_shape(tx.init, params), x) == expected
  assert expected == pytest.approx(6 * batch * _layer_sum(DENSE), rel=0.17)  # the analytic rule


def test_the_real_train_block_counts_k_steps():
  config = experiment('bench_dense', 'batch=256')
  model = models.build(config.model, (28, 28, 1))
  tx = optax.adam(1e-3)
  forward = Forward(model, losses.compose(config.loss))
  none = preprocessing.Preprocessor('none')
  block = make_train_block(forward, tx, sharding.make_mesh())
  k, batch = 10, 256
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))['params']
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     opt_state=jax.eval_shape(tx.init, params), rng=jax.random.PRNGKey(0))
  xs = jax.ShapeDtypeStruct((k, batch, 28, 28, 1), jnp.float32)
  per_step = 6 * batch * _layer_sum(DENSE) - 2 * batch * 784 * 512
  assert flops.count(block, state, none, {'x': xs}, None) == k * per_step
  bare_block = bare.make_bare_block(forward, tx)
  assert flops.count(bare_block, params, jax.eval_shape(tx.init, params), jnp.int32(0), {}, none,
                     xs, jax.random.PRNGKey(0)) == k * per_step


def test_scan_multiplies_by_length_and_nested_calls_are_walked():
  w = jnp.zeros((16, 8))

  def body(h, x):
    return h, jax.jit(jax.checkpoint(lambda a: jnp.tanh(a @ w)))(x)

  xs = jnp.zeros((7, 4, 16))
  one = 2 * 4 * 16 * 8
  assert flops.count(lambda xs: jax.lax.scan(body, 0.0, xs), xs) == 7 * one
  # cond counts its costliest branch; while counts its body once and says so.
  pick = lambda p, x: jax.lax.cond(p, lambda x: (x @ w) @ w.T, lambda x: x, x)  # noqa: E731
  assert flops.count(pick, True, xs[0]) == 2 * one
  counts = flops.count_by_primitive(
      lambda x: jax.lax.while_loop(lambda c: c[1] < 3, lambda c: (c[0] @ w @ w.T, c[1] + 1),
                                   (x, 0)), xs[0])
  assert counts.total == 2 * one and counts.while_loops == 1
  # A batched dot_general (einsum with a batch axis).
  a, b = jnp.zeros((5, 3, 6)), jnp.zeros((5, 6, 2))
  assert flops.count(lambda a, b: jnp.einsum('bij,bjk->bik', a, b), a, b) == 2 * 5 * 3 * 6 * 2


def test_conv_counts_window_times_input_features_per_output():
  x = jnp.zeros((4, 28, 28, 3))
  conv = nn.Conv(8, (3, 3), padding='SAME')
  params = jax.eval_shape(conv.init, jax.random.PRNGKey(0), x)
  fwd = 2 * 4 * 28 * 28 * 8 * (3 * 3 * 3)
  counts = flops.count_by_primitive(conv.apply, params, x)
  assert counts.by_primitive == {'dot_general': 0, 'conv_general_dilated': fwd}
  grouped = nn.Conv(6, (3, 3), strides=2, feature_group_count=3)
  gp = jax.eval_shape(grouped.init, jax.random.PRNGKey(0), x)
  assert flops.count(grouped.apply, gp, x) == 2 * 4 * 14 * 14 * 6 * (3 * 3 * 1)
  # Gradient w.r.t. the kernel only (x is data): one more conv of the forward's size.
  loss = lambda p: jnp.sum(conv.apply(p, x))  # noqa: E731
  assert flops.count(jax.grad(loss), params) == 2 * fwd


# --- the CLI ----------------------------------------------------------------------------------

def _env():
  return dict(os.environ, AELAB_DATA_DIR=str(DATA), JAX_PLATFORMS='cpu')


def _bench(*args):
  return subprocess.run([sys.executable, '-m', 'aelab.bench', *args], cwd=ROOT, env=_env(),
                        capture_output=True, text=True, timeout=120)


@pytest.fixture(scope='module')
def tiny_bench(tmp_path_factory):
  out = tmp_path_factory.mktemp('bench') / 'bench.json'
  result = _bench('--config=experiments/bench_dense.py:tiny', '--repeats=2', '--steps=10',
                  '--chunk_s=0', '--matmul_size=256', f'--out={out}')
  assert result.returncode == 0, result.stderr
  return json.loads(out.read_text()), result.stdout


def _numbers(tree, path=''):
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _numbers(v, f'{path}.{k}')
  elif isinstance(tree, list):
    for i, v in enumerate(tree):
      yield from _numbers(v, f'{path}[{i}]')
  elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
    yield path, tree


def test_bench_json_has_every_field_and_sane_values(tiny_bench):
  r, stdout = tiny_bench
  for key in ('config', 'overrides', 'device', 'settings', 'flops_per_step', 'compile_s', 'lower_s',
              'xla_compile_s', 'train', 'paths', 'bare', 'reference_matmul', 'pipeline_added_pct',
              'peak_host_memory_mib', 'peak_device_memory_mib', 'wall_s', 'resolved_config'):
    assert key in r, key
  assert set(r['paths']) == {'device_data', 'host_fed', 'on_device'}
  for path, v in _numbers({k: v for k, v in r.items() if k not in ('pipeline_added_pct',
                                                                   'resolved_config')}):
    if path != '.flops_per_step.by_primitive.conv_general_dilated':  # a dense model: 0
      assert math.isfinite(v) and v > 0, (path, v)
  for v in _numbers(r['pipeline_added_pct']):
    assert math.isfinite(v[1])
  st = r['settings']
  assert (st['batch_size'], st['steps_per_call'], st['repeats']) == (50, 5, 2)
  assert st['steps_per_run'] == 10 and st['data_path'] == 'device_data'
  assert r['device']['platform'] == 'cpu' and r['reference_matmul']['size'] == 256
  per_step = 6 * 50 * _layer_sum((784, 32, 8, 32, 784)) - 2 * 50 * 784 * 32
  assert r['flops_per_step']['aelab'] == r['flops_per_step']['bare'] == per_step
  for stats in [r['train'], r['bare'], *r['paths'].values()]:
    sps = np.array(stats['steps_per_s']['values'])
    assert len(sps) == 2 and stats['steps_per_s']['min'] <= stats['steps_per_s']['median'] \
        <= stats['steps_per_s']['max']
    np.testing.assert_allclose(stats['examples_per_s']['values'], sps * 50, rtol=1e-12)
    np.testing.assert_allclose(stats['flops_per_s']['values'], sps * per_step, rtol=1e-12)
  assert r['train']['steps_per_s'] == r['paths']['device_data']['steps_per_s']
  ratio = np.array(r['train']['steps_per_s']['values']) / np.array(r['bare']['steps_per_s']['values'])
  np.testing.assert_allclose(r['train']['ratio_to_bare']['values'], ratio, rtol=1e-12)
  ref = np.array(r['reference_matmul']['flops_per_s']['values'])
  np.testing.assert_allclose(r['train']['ratio_to_reference']['values'],
                             np.array(r['train']['flops_per_s']['values']) / ref, rtol=1e-12)
  on_dev = np.array(r['paths']['on_device']['steps_per_s']['values'])
  host = np.array(r['paths']['host_fed']['steps_per_s']['values'])
  np.testing.assert_allclose(r['pipeline_added_pct']['host_fed']['values'],
                             100 * (on_dev / host - 1), rtol=1e-9)
  compile_s = np.array(r['lower_s']['values']) + np.array(r['xla_compile_s']['values'])
  np.testing.assert_allclose(r['compile_s']['values'], compile_s)
  assert r['resolved_config']['model']['hidden'] == [32, 8]
  for label in ('aelab steps/s', 'bare jit(scan)', 'reference matmul', 'pipeline added'):
    assert label in stdout


def test_bench_keras_is_one_fit_per_repeat_paired_with_the_repeats_turns(tiny_bench):
  r, stdout = tiny_bench
  keras, st = r['keras'], r['settings']
  assert 'turns' in st['timing']
  if keras_ref.available() is not None:  # no keras here: the table says why, no ratio
    assert isinstance(keras['note'], str) and 'ratio_to_keras' not in r['train']
    assert f'keras reference: {keras["note"]}' in stdout
    return
  per_epoch = st['train_examples'] // 50
  assert (keras['steps_per_epoch'], keras['epochs_per_fit']) == (per_epoch, 1)  # >= --steps=10
  assert keras['steps_per_fit'] == per_epoch and 'wall-clock' in keras['timing']
  sps = np.array(keras['steps_per_s']['values'])
  assert len(sps) == 2 and np.all(sps > 0) and keras['fit_setup_s'] >= 0
  np.testing.assert_allclose(keras['examples_per_s']['values'], sps * 50, rtol=1e-12)
  np.testing.assert_allclose(r['train']['ratio_to_keras']['values'],
                             np.array(r['train']['steps_per_s']['values']) / sps, rtol=1e-12)
  for label in ('keras steps/s (one fit per repeat)', 'aelab / keras steps/s (same repeat)',
                f'one fit of 1 epoch x {per_epoch} full batches'):
    assert label in stdout


@pytest.mark.parametrize('args,message', [
    (('--config=experiments/bench_dense.py:batch=0',), "unknown variant 'batch=0'"),
    (('--config=experiments/bench_dense.py:tiny', '--config.train.fast=1'),
     "unknown config field 'config.train.fast'"),
    (('--config=experiments/bench_dense.py:tiny', '--repeats=0'), '--repeats = 0'),
])
def test_bench_errors_are_one_line(args, message):
  result = _bench(*args)
  assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr
  assert result.stderr.startswith('aelab: error: ') and message in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1
