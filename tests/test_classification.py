"""Supervised pieces: the classifier model, the softmax_cross_entropy term, the classification
evaluator (accuracy, confusion matrix), L-BFGS in the train step, and frozen parameters."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aelab import losses, models
from aelab.bench import bare
from aelab.config import defaults
from aelab.trainer import checkpoint, optim, sharding, train
from aelab.trainer.setup import build
from aelab.trainer.state import TrainState, make_train_block
from aelab.trainer.writers import read_jsonl
from conftest import DATA, experiment, one_line_error as _error


def _classifier_config(hidden=(32,), steps=300, **optimizer):
  """mnist_ae:tiny (900 train / 100 val / 500 test digits) as a classifier."""
  config = experiment('mnist_ae')
  config.model = defaults.model('classifier', hidden=hidden, activation='relu', classes=10)
  config.loss = defaults.loss(softmax_cross_entropy=dict(weight=1.0))
  config.evals = dict(test=defaults.evaluator('classification', split='test'))
  config.train.update(num_steps=steps, progress=False, checkpoint_every=0)
  config.optimizer.update(optimizer)
  return config


def _final_state(workdir):
  ckpts = checkpoint.Checkpoints(workdir)
  _, arrays, _ = ckpts.restore_raw()
  ckpts.close()
  return jax.tree.map(np.asarray, arrays['state'])


def _final_params(workdir):
  return _final_state(workdir)['params']


# -- the model ---------------------------------------------------------------------------------


def test_classifier_layers_match_the_dense_encoder_and_numpy():
  shape = (4, 2, 1)
  x = jax.random.uniform(jax.random.PRNGKey(1), (5, *shape))
  cfg = defaults.model('classifier', hidden=(6, 3), activation='tanh,sigmoid', classes=4)
  model = models.build(cfg, shape)
  params = model.init(jax.random.PRNGKey(0), x)['params']
  dense = models.build(defaults.model('dense', hidden=(6, 3)), shape)
  dense_params = dense.init(jax.random.PRNGKey(0), x)['params']
  assert sorted(params) == ['encoder_1', 'encoder_2', 'head']
  for name in ('encoder_1', 'encoder_2'):  # a pretrained encoder loads by name
    assert jax.tree.map(jnp.shape, params[name]) == jax.tree.map(jnp.shape, dense_params[name])
  probs, aux = model.apply({'params': params}, x)
  p = jax.tree.map(np.asarray, params)
  h1 = np.tanh(np.asarray(x).reshape(5, -1) @ p['encoder_1']['kernel'] + p['encoder_1']['bias'])
  h2 = 1 / (1 + np.exp(-(h1 @ p['encoder_2']['kernel'] + p['encoder_2']['bias'])))
  logits = h2 @ p['head']['kernel'] + p['head']['bias']
  expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  np.testing.assert_allclose(aux['logits'], logits, atol=1e-5)
  np.testing.assert_allclose(probs, expected, atol=1e-6)
  np.testing.assert_allclose(aux['code'], h2, atol=1e-6)
  np.testing.assert_allclose(aux['encoder'][0], h1, atol=1e-6)
  np.testing.assert_allclose(model.apply({'params': params}, x, method=model.encode), h2, atol=1e-6)
  assert model.layer_activations() == {'1': 'tanh', '2': 'sigmoid', 'code': 'sigmoid'}
  assert models.build(cfg, shape).filters(params).shape == (6, *shape)
  assert models.build(cfg, (8,)).filters(params) is None
  assert _error(model.apply, {'params': params}, aux['code'], method=model.decode) == (
      'model classifier has no decoder: it maps inputs to class probabilities (use a dense '
      'autoencoder to reconstruct inputs)')


def test_softmax_regression_has_only_a_head():
  cfg = defaults.model('classifier', hidden=(), classes=3)
  model = models.build(cfg, (2, 2, 1))
  x = jnp.arange(8.0).reshape(2, 2, 2, 1)
  params = model.init(jax.random.PRNGKey(0), x)['params']
  assert jax.tree.map(jnp.shape, params) == {'head': {'kernel': (4, 3), 'bias': (3,)}}
  probs, aux = model.apply({'params': params}, x)
  assert aux['encoder'] == () and aux['code'].shape == (2, 4)
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
  assert models.build(cfg, (2, 2, 1)).filters(params).shape == (3, 2, 2, 1)  # the head's weights


@pytest.mark.parametrize('field, value, message', [
    ('classes', 1, 'model.classes = 1; it must be an integer >= 2 (the number of labels)'),
    ('hidden', (8, 0), 'model.hidden[1] = 0; it must be an integer >= 1'),
    ('activation', 'tanh,relu,relu', "activation 'tanh,relu,relu' names 3 layers"),
])
def test_bad_classifier_config_is_one_line(field, value, message):
  cfg = defaults.model('classifier', hidden=(8, 4))
  cfg[field] = value
  assert message in _error(models.build, cfg, (4,))


# -- the loss term -----------------------------------------------------------------------------


def test_softmax_cross_entropy_is_the_mean_negative_log_probability():
  logits = jnp.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
  labels = jnp.array([0, 2])
  out = losses.Outputs(x=jnp.zeros((2, 4)), recon=jax.nn.softmax(logits), aux={'logits': logits},
                       params={}, labels=labels)
  p = np.exp(np.asarray(logits, np.float64))
  p /= p.sum(axis=1, keepdims=True)
  expected = -np.mean(np.log(p[[0, 1], [0, 2]]))
  assert float(losses.term_function('softmax_cross_entropy')(out)) == pytest.approx(expected, rel=1e-6)
  total, terms = losses.compose(defaults.loss(softmax_cross_entropy=dict(weight=2.0)))(out)
  assert float(total) == pytest.approx(2 * expected, rel=1e-6)
  assert set(terms) == {'softmax_cross_entropy'}


def test_softmax_cross_entropy_grads_through_the_classifier_match_finite_differences(x64):
  from jax.test_util import check_grads
  cfg = defaults.model('classifier', hidden=(5,), activation='sigmoid', classes=3)
  model = models.build(cfg, (8,))
  x = jnp.asarray(np.random.default_rng(2).uniform(0.05, 0.95, size=(6, 8)))
  labels = jnp.array([0, 1, 2, 2, 1, 0])
  params = jax.tree.map(lambda a: a.astype(jnp.float64),
                        model.init(jax.random.PRNGKey(2), x)['params'])
  loss_fn = losses.compose({'softmax_cross_entropy': {'weight': 1.0},
                            'weight_decay': {'weight': 0.1}})

  def objective(p):
    probs, aux = model.apply({'params': p}, x)
    return loss_fn(losses.Outputs(x=x, recon=probs, aux=aux, params=p, labels=labels))[0]

  check_grads(jax.jit(objective), (params,), order=1, modes=['rev'])
  # d/d logits of the mean cross-entropy is (softmax - onehot) / B: the head's bias gradient.
  probs, _ = model.apply({'params': params}, x)
  expected = np.mean(np.asarray(probs) - np.eye(3)[np.asarray(labels)], axis=0)
  np.testing.assert_allclose(jax.grad(objective)(params)['head']['bias'], expected, atol=1e-12)


def test_softmax_cross_entropy_errors_are_one_line():
  term = losses.term_function('softmax_cross_entropy')
  logits = jnp.zeros((2, 3))
  no_labels = losses.Outputs(x=logits, recon=logits, aux={'logits': logits}, params={})
  assert 'needs labels, but this batch has none' in _error(term, no_labels)
  image_logits = jnp.zeros((2, 4, 4, 1))  # a dense autoencoder's logits: the image
  ae = losses.Outputs(x=image_logits, recon=image_logits, aux={'logits': image_logits},
                      params={}, labels=jnp.array([0, 1]))
  assert "this model's are shape (2, 4, 4, 1) for a batch of 2 labels" in _error(term, ae)
  compose = lambda: losses.compose(defaults.loss(softmax_cross_entropy=dict(weight=1.0)),  # noqa
                                   has_labels=False)
  assert 'needs labels, but this dataset has none' in _error(compose)
  probs = losses.Outputs(x=jnp.zeros((2, 16)), recon=logits, aux={'logits': logits}, params={})
  assert 'this model outputs 3 values for 16 features (a classifier?' in _error(
      losses.term_function('reconstruction'), probs)


# -- training and the evaluator ----------------------------------------------------------------


@pytest.fixture(scope='module')
def classifier_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('classifier')
  config = _classifier_config()
  config.evals.plots = defaults.evaluator('plots')
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv('AELAB_DATA_DIR', str(DATA))
    summary = train.train_and_evaluate(config, workdir)
  return config, workdir, summary


def test_classifier_learns_tiny_mnist(classifier_run):
  _, workdir, summary = classifier_run
  test = summary['test']
  assert test['accuracy'] > 0.75  # chance: 0.1 (300 Adam steps on 900 digits)
  assert test['error_rate'] == pytest.approx(1 - test['accuracy'], abs=1e-12)
  assert test['loss'] == test['softmax_cross_entropy'] < 1.0  # ln 10 = 2.30 at chance
  rows = read_jsonl(workdir / 'metrics.jsonl')
  assert {'test/accuracy', 'test/error_rate', 'test/loss'} <= set(rows[-1])
  for name in ('confusion_test.png', 'filters.png', 'latent.png'):
    assert (workdir / 'plots' / name).stat().st_size > 1000, name
  assert not (workdir / 'plots' / 'reconstructions.png').exists()  # a classifier has none


def test_a_periodic_evaluation_writes_the_confusion_json_but_not_its_picture(tmp_path):
  """The picture is drawn at the run's last step (test_classifier_learns_tiny_mnist)."""
  config = _classifier_config(steps=20)
  config.evals.test.every = config.train.steps_per_call = 5
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv('AELAB_DATA_DIR', str(DATA))
    stopped = train.train_and_evaluate(config, tmp_path, should_stop=lambda step: step >= 10)
  assert (stopped['interrupted'], stopped['step']) == ('should_stop', 10)
  assert json.loads((tmp_path / 'confusion_test.json').read_text())['step'] == 5
  assert not (tmp_path / 'plots' / 'confusion_test.png').exists()


def test_accuracy_and_confusion_equal_numpy_on_the_models_predictions(classifier_run):
  config, workdir, summary = classifier_run
  setup = build(config)
  params, split = _final_params(workdir), setup.dataset.test
  probs, aux = setup.forward.model.apply({'params': params}, jnp.asarray(split.x))
  predicted, y = np.argmax(np.asarray(probs), axis=1), split.y
  confusion = np.zeros((10, 10), np.int64)
  np.add.at(confusion, (y, predicted), 1)
  saved = json.loads((workdir / 'confusion_test.json').read_text())
  assert saved['matrix'] == confusion.tolist() and confusion.sum() == len(y) == 500
  assert (saved['split'], saved['step']) == ('test', 300)
  assert saved['classes'] == [str(i) for i in range(10)]
  assert summary['test']['accuracy'] == np.mean(predicted == y) == saved['accuracy']
  nll = -np.log(np.asarray(probs, np.float64)[np.arange(len(y)), y])
  assert summary['test']['loss'] == pytest.approx(nll.mean(), rel=1e-5)
  h = np.maximum(split.x.reshape(500, -1) @ params['encoder_1']['kernel']
                 + params['encoder_1']['bias'], 0)
  by_hand = h @ params['head']['kernel'] + params['head']['bias']
  np.testing.assert_allclose(aux['logits'], by_hand, atol=1e-4)


def test_classification_errors_are_one_line_and_come_before_anything_is_written(tmp_path):
  config = _classifier_config()
  config.dataset = defaults.dataset('lowvar')  # no labels
  config.loss = defaults.loss(softmax_cross_entropy=dict(weight=1.0))
  workdir = tmp_path / 'run'
  assert 'softmax_cross_entropy needs labels, but this dataset has none' in _error(
      train.train_and_evaluate, config, workdir)
  config.loss = defaults.loss(reconstruction=dict(weight=1.0))
  config.model = defaults.model('dense', hidden=(8,))
  assert 'the classification evaluator needs labels, but the test split of dataset ' \
         "'lowvar' has none" in _error(train.train_and_evaluate, config, workdir)
  config = _classifier_config()
  config.model.classes = 5
  assert 'has labels 0..9 but model.classes = 5; labels must lie in 0..4' in _error(
      train.train_and_evaluate, config, workdir)
  config = _classifier_config()
  config.evals.val = defaults.evaluator('reconstruction')
  assert "model 'classifier' does not (use type classification)" in _error(
      train.train_and_evaluate, config, workdir)
  config = _classifier_config(frozen='encoder_1, decoder_1')
  assert _error(train.train_and_evaluate, config, workdir) == (
      "optimizer.frozen names 'decoder_1', not a parameter or group of this model; its parameters: "
      'encoder_1, head; its groups: encoder, head')
  config = _classifier_config(frozen='encoder_1,head')
  assert 'freezes every parameter of this model' in _error(train.train_and_evaluate, config,
                                                           workdir)
  assert not workdir.exists()


# -- L-BFGS ------------------------------------------------------------------------------------


def _least_squares(d=5, n=64, seed=0):
  """Rows [a | b] with b = a w + c + noise: the forward pass of a linear least-squares fit, whose
  optimum is np.linalg.lstsq's."""
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(n, d)).astype(np.float32)
  b = a @ rng.normal(size=d) + 0.5 + 0.1 * rng.normal(size=n)
  rows = np.concatenate([a, b[:, None].astype(np.float32)], axis=1)

  def forward(params, prep, batch, rng, train, step=None, stats=None):
    del prep, rng, train, step, stats
    x = batch['x']
    fit = x[:, :-1] @ params['w'] + params['c']
    total = jnp.mean(jnp.square(fit - x[:, -1]))
    return total, ({'mse': total}, fit, {}, {})

  exact = np.linalg.lstsq(np.c_[a, np.ones(n)].astype(np.float64), b, rcond=None)[0]
  return rows, forward, exact, {'w': jnp.zeros(d), 'c': jnp.zeros(())}


def _state(params, tx):
  """A fresh TrainState in fresh buffers (the train block donates them), as the trainer's."""
  return jax.jit(lambda p: TrainState(step=jnp.zeros((), jnp.int32), params=p,
                                      opt_state=tx.init(p), rng=jax.random.PRNGKey(0)))(params)


def _lbfgs(**fields):
  cfg = defaults.optimizer(name='lbfgs', **fields)
  return optim.make(cfg, total_steps=100)


def test_lbfgs_in_the_train_step_converges_to_the_least_squares_optimum():
  rows, forward, exact, params = _least_squares()
  mesh = sharding.make_mesh()
  tx = _lbfgs(lbfgs_memory=5)
  block = make_train_block(forward, tx, mesh)
  state, out = block(_state(params, tx), None, {'x': jnp.asarray(np.stack([rows] * 20))}, None,
                     True)
  loss = np.asarray(out['loss'])
  assert np.all(np.diff(loss) <= 1e-6 * loss[:-1])  # the line search never lets the loss rise
  fitted = np.r_[np.asarray(state.params['w']), float(state.params['c'])]
  np.testing.assert_allclose(fitted, exact, atol=2e-4)
  assert bool(out['finite'])
  # Adam on the same problem, 20 steps at a good rate, is nowhere near.
  adam = make_train_block(forward, optax.adam(0.1), mesh)
  _, out_adam = adam(_state(params, optax.adam(0.1)), None,
                     {'x': jnp.asarray(np.stack([rows] * 20))}, None, True)
  assert float(out_adam['loss'][-1]) > 10 * loss[-1]


def test_lbfgs_without_line_search_steps_by_the_learning_rate_and_the_bench_block_runs():
  rows, forward, exact, params = _least_squares()
  tx = _lbfgs(lbfgs_linesearch='none', learning_rate=0.5)
  block = bare.make_bare_block(forward, tx)
  state = _state(params, tx)
  carry = (state.params, state.opt_state, state.step, {})
  xs = jnp.asarray(np.stack([rows] * 60))
  (params_out, _, _, _), _ = bare.run_bare(block, carry, None, xs, jax.random.PRNGKey(0), 60, 60)
  fitted = np.r_[np.asarray(params_out['w']), float(params_out['c'])]
  np.testing.assert_allclose(fitted, exact, atol=1e-3)
  zoom = _lbfgs()
  state = _state(params, zoom)
  params2, _, _, _, _ = bare.make_bare_block(forward, zoom)(  # the line search gets the loss too
      state.params, state.opt_state, state.step, {}, None, xs[:20], jax.random.PRNGKey(0))
  np.testing.assert_allclose(np.r_[np.asarray(params2['w']), float(params2['c'])], exact,
                             atol=2e-4)


def test_full_batch_lbfgs_beats_adam_on_softmax_regression(tmp_path):
  """UFLDL's recipe: train.batch_size = the training set (900 digits), each step one L-BFGS
  iteration; softmax regression with weight decay is strictly convex."""
  def run(name, **optimizer):
    config = _classifier_config(hidden=(), steps=50, name=name, **optimizer)
    config.loss = defaults.loss(softmax_cross_entropy=dict(weight=1.0),
                                weight_decay=dict(weight=1e-3))
    config.evals = dict(train=defaults.evaluator('classification', split='train'))
    config.train.update(batch_size=900, log_every=1)
    summary = train.train_and_evaluate(config, tmp_path / name)
    rows = read_jsonl(tmp_path / name / 'metrics.jsonl')
    steps = [r for r in rows if 'train/grad_norm' in r]  # not the evaluator's train/* row
    return summary['train']['loss'], np.array([r['train/loss'] for r in steps]), rows
  lbfgs, curve, rows = run('lbfgs')
  adam, _, _ = run('adam', learning_rate=1e-2)
  assert len(curve) == 50 and np.all(np.diff(curve) <= 1e-6 * curve[:-1])  # monotone
  assert lbfgs < 0.7 * adam  # about 0.120 against 0.185
  assert curve[0] > 2.0 and lbfgs < 0.125
  assert 'train/learning_rate' not in rows[0]  # the line search chooses every step


def test_lbfgs_option_errors_are_one_line():
  assert 'optimizer.lbfgs_memory = 0; it must be an integer in [1, 10000]' in _error(
      _lbfgs, lbfgs_memory=0)
  assert 'optimizer.grad_clip does not apply to lbfgs' in _error(_lbfgs, grad_clip=1.0)
  assert "use schedule 'constant' or lbfgs_linesearch 'none'" in _error(_lbfgs, schedule='cosine')
  assert 'lbfgs_linesearch' in _error(_lbfgs, lbfgs_linesearch='backtracking')


# -- frozen parameters -------------------------------------------------------------------------


def _frozen_config(name, batch_size):
  config = _classifier_config(steps=20, name=name, frozen='encoder_1')
  config.train.batch_size = batch_size
  config.evals = {}
  return config


@pytest.fixture(scope='module')
def frozen_lbfgs(tmp_path_factory):
  """Full-batch L-BFGS, 20 steps (two blocks of 10), encoder_1 frozen, trained once: its workdir.
  Two tests read it: the frozen layer stays bit-identical; a resumed run ends as it does."""
  workdir = tmp_path_factory.mktemp('frozen_lbfgs') / 'unbroken'
  train.train_and_evaluate(_frozen_config('lbfgs', 900), workdir)
  return workdir


@pytest.mark.parametrize('name, batch_size', [('adam', 50), ('lbfgs', 900)])
def test_frozen_parameters_stay_bit_identical(tmp_path, name, batch_size, request):
  config = _frozen_config(name, batch_size)
  setup = build(config)
  initial = jax.tree.map(np.asarray, setup.init(setup.init_rng).params)
  if name == 'lbfgs':
    workdir = request.getfixturevalue('frozen_lbfgs')
  else:
    workdir = tmp_path
    train.train_and_evaluate(config, workdir)
  final = _final_params(workdir)
  for leaf in ('kernel', 'bias'):
    assert final['encoder_1'][leaf].tobytes() == initial['encoder_1'][leaf].tobytes()
    assert np.abs(final['head'][leaf] - initial['head'][leaf]).max() > 1e-3


def test_a_resumed_lbfgs_run_with_frozen_layers_ends_exactly_as_an_unbroken_one(frozen_lbfgs,
                                                                                tmp_path):
  """The line search's state (last value, gradient, step) and the L-BFGS memory travel through
  the checkpoint (stopped after the first block of 10 steps, the memory of 10 updates full)."""
  config = _frozen_config('lbfgs', 900)
  out = train.train_and_evaluate(config, tmp_path / 'resumed', should_stop=lambda step: step == 10)
  assert out['checkpoint_step'] == 10
  assert train.train_and_evaluate(config, tmp_path / 'resumed')['resumed_from_step'] == 10
  jax.tree.map(np.testing.assert_array_equal, _final_state(frozen_lbfgs),
               _final_state(tmp_path / 'resumed'))
