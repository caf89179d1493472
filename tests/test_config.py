"""aelab.config: the variant parser, config files, overrides, the defaults tables, and every
experiment's variants; all without jax."""

import json
import subprocess
import sys
import textwrap

import ml_collections
import pytest

from aelab import cli
from aelab.config import apply, catalog, defaults, load, parse_arg
from aelab.config.overrides import apply_args
from aelab.errors import AelabError
from conftest import ROOT, experiment

pytestmark = pytest.mark.quick  # the fast tier: python -m pytest -m quick

VARIANTS = {  # every variant the experiments document (as /work/baseline/capture.py lists them)
    'bench_dense': ['', 'tiny', 'batch=4096', 'batch=4096,tiny'],
    'contractive_mnist': ['', 'tiny', 'plain', 'exact', 'fashion', 'plain,tiny', 'exact,tiny'],
    'conv_ae_mnist': ['', 'tiny', 'fashion', 'fashion,tiny'],
    'denoising_mnist': ['', 'tiny', 'plain', 'masking', 'salt_and_pepper', 'fashion',
                        'masking,plain', 'masking,tiny', 'salt_and_pepper,tiny', 'plain,tiny'],
    'fashion_mnist_ae': ['', 'tiny'],
    'h2o_tanh': ['', 'tiny'],
    'identity_lowvar': ['', 'raw', 'normalized', 'raw,tiny', 'normalized,tiny'],
    'mnist_ae': ['', 'tiny', 'pca', 'pca,tiny'],
    'sparse_kl_mnist': ['', 'tiny', 'fashion', 'fashion,tiny'],
    'sparse_l1_mnist': ['', 'tiny', 'plain', 'fashion', 'plain,tiny'],
    'tabular_ae': ['', 'tiny'],
    'vae_mnist': ['', 'tiny', 'conv', 'fashion', 'beta4', 'conv,tiny', 'beta4,tiny', 'logistic',
                  'logistic,tiny'],
    'vqvae_mnist': ['', 'tiny', 'fashion', 'noema', 'noema,tiny'],
    'iwae_mnist': ['', 'tiny', 'k=50', 'k=1', 'two_layer', 'dreg', 'fashion', 'two_layer,k=1',
                   'two_layer,tiny', 'dreg,tiny'],
    'vampprior_mnist': ['', 'tiny', 'iwae', 'fashion', 'iwae,tiny'],
    'wae_rae_mnist': ['', 'tiny', 'model=rae_l2', 'model=rae_gp', 'model=ae', 'fashion',
                      'model=rae_gp,tiny'],
    'generative_mnist': ['', 'tiny', 'model=iwae50', 'model=vqvae', 'model=ae', 'fashion',
                         'model=vampprior,tiny', 'model=rae_gp,tiny'],
    'sae_toy': ['', 'tiny', 'topk', 'batchtopk', 'jumprelu', 'l1', 'matryoshka', 'gated',
                'jumprelu,tiny', 'l1,tiny', 'matryoshka,tiny', 'gated,tiny'],
    'sae_mnist_layer': ['', 'tiny', 'batchtopk', 'jumprelu', 'l1', 'matryoshka', 'gated',
                        'l1,tiny'],
    'sae_synth': ['', 'tiny', 'batchtopk', 'matryoshka', 'jumprelu', 'gated', 'l1', 'standard',
                  'standard,batchtopk', 'samples=2000000', 'tiny,matryoshka', 'tiny,gated'],
    'bench_sae': ['', 'approx', 'tiny', 'approx,tiny', 'batch=4096'],
    'disentangle_sprites': ['', 'tiny', 'model=beta_vae', 'model=annealed_vae', 'model=beta_tcvae',
                            'model=factor_vae', 'model=dip_vae_i', 'model=dip_vae_ii',
                            'model=beta_vae,strength=16', 'size64', 'steps=5000,metric_points=2000',
                            'tiny,model=factor_vae', 'tiny,model=beta_tcvae'],
}


def _error(fn, *args, **kwargs) -> str:
  with pytest.raises(AelabError) as e:
    fn(*args, **kwargs)
  message = str(e.value)
  assert '\n' not in message
  return message


def _write(tmp_path, name, source):
  path = tmp_path / name
  path.write_text(textwrap.dedent(source))
  return str(path)


# --- parse_arg ---------------------------------------------------------------------------------

def test_parse_arg_types_follow_the_defaults():
  assert parse_arg(None, batch=256, tiny=False).to_dict() == {'batch': 256, 'tiny': False}
  assert parse_arg('', tiny=False).tiny is False
  v = parse_arg(' batch=4096 , tiny,lr=3e-4,name=x ', batch=256, tiny=False, lr=1e-3, name='a')
  assert v.to_dict() == {'batch': 4096, 'tiny': True, 'lr': 3e-4, 'name': 'x'}
  assert isinstance(v, ml_collections.ConfigDict) and isinstance(v.lr, float)
  assert parse_arg('', batch=int).batch is None and parse_arg('batch=8', batch=int).batch == 8


@pytest.mark.parametrize('arg,needle', [
    ('big', "unknown variant 'big'; "),
    ('batch', "unknown variant 'batch' (batch needs a value: batch=<int>)"),
    ('tiny=1', "unknown variant 'tiny=1' (tiny is a word"),
    ('tiny=', "unknown variant 'tiny='"),
    ('batch=abc', "unknown variant 'batch=abc' (batch is an int)"),
    ('batch=1.5', "unknown variant 'batch=1.5' (batch is an int)"),
    ('lr=fast', "unknown variant 'lr=fast' (lr is a float)"),
])
def test_parse_arg_errors_name_the_item_and_list_the_variants(arg, needle):
  message = _error(parse_arg, arg, batch=256, tiny=False, lr=1e-3)
  assert needle in message
  assert message.endswith('valid variants (comma-separated): batch=<int> (default 256), tiny, '
                          'lr=<float> (default 0.001)')


def test_parse_arg_without_variants_and_bad_specs():
  assert 'this config has no variants' in _error(parse_arg, 'tiny')
  with pytest.raises(TypeError, match='bool, int, float or str'):
    parse_arg('', hidden=(1, 2))


# --- load --------------------------------------------------------------------------------------

def test_load_errors_are_one_line(tmp_path):
  syntax = _write(tmp_path, 'syntax.py', 'def get_config(arg=None)\n  return 1\n')
  assert _error(load, syntax) == f"{syntax}:1: syntax error: expected ':'"
  raises = _write(tmp_path, 'raises.py', 'def get_config(arg=None):\n  return {}[arg]\n')
  assert _error(load, f'{raises}:a,b') == f"{raises}: get_config('a,b') raised KeyError: 'a,b'"
  assert _error(load, raises) == f'{raises}: get_config(None) raised KeyError: None'
  missing = str(tmp_path / 'missing.py')
  assert _error(load, f'{missing}:tiny') == f'config file {missing!r} does not exist'
  noget = _write(tmp_path, 'noget.py', 'X = 1\n')
  assert 'defines no get_config' in _error(load, noget)
  top = _write(tmp_path, 'top.py', 'import no_such_module_x\n')
  assert "raised ModuleNotFoundError: No module named 'no_such_module_x'" in _error(load, top)
  plain = _write(tmp_path, 'plain.py', 'def get_config(arg=None):\n  return {"a": 1}\n')
  assert 'returned a dict, not an ml_collections.ConfigDict' in _error(load, plain)


def test_an_aelab_error_of_get_config_passes_through(tmp_path):
  own = _write(tmp_path, 'own.py', '''
      from aelab.errors import AelabError
      def get_config(arg=None):
        raise AelabError(f'no variant {arg}')
      ''')
  assert _error(load, f'{own}:x') == 'no variant x'


def test_a_config_builds_on_a_sibling_and_leaves_no_trace(tmp_path):
  for d, width in (('a', 3), ('b', 5)):  # two directories with a base of the same name
    (tmp_path / d).mkdir()
    _write(tmp_path / d, 'base.py', f'''
        import ml_collections
        def get_config(arg=None):
          return ml_collections.ConfigDict(dict(width={width}, arg=arg))
        ''')
    _write(tmp_path / d, 'child.py', '''
        from base import get_config as base_config
        def get_config(arg=None):
          config = base_config(arg)
          config.width *= 10
          return config
        ''')
  path, modules = list(sys.path), set(sys.modules)
  assert load(f'{tmp_path}/a/child.py:x').to_dict() == {'width': 30, 'arg': 'x'}
  assert load(f'{tmp_path}/b/child.py').to_dict() == {'width': 50, 'arg': None}
  assert load(f'{tmp_path}/a/child.py').width == 30  # again: the same
  assert load(f'{tmp_path}/a/base.py').width == 3
  assert sys.path == path and not {'base', 'child'} & (set(sys.modules) - modules)


# --- overrides ---------------------------------------------------------------------------------

def _config():
  return ml_collections.ConfigDict(dict(
      seed=0, preprocessing='none', train=defaults.train(),
      model=defaults.model('dense'), optimizer=defaults.optimizer(),
      loss=defaults.loss(reconstruction=dict(weight=1.0))))


def test_command_line_values_are_parsed_by_the_field_type():
  config = apply_args(_config(), [
      ('train.num_steps', '300'), ('optimizer.learning_rate', '1e6'), ('preprocessing', 'h2o'),
      ('model.hidden', '(128,16)'), ('train.progress', 'false'), ('model.tied', None),
      ('loss.reconstruction.weight', '2'), ('seed', '7')])
  assert config.train.num_steps == 300 and config.optimizer.learning_rate == 1e6
  assert config.preprocessing == 'h2o' and config.model.hidden == (128, 16)
  assert config.train.progress is False and config.model.tied is True
  assert config.loss.reconstruction.weight == 2.0 and config.seed == 7
  for text, value in (('True', True), ('False', False), ('true', True), ('1', True), ('0', False)):
    assert apply_args(_config(), [('train.progress', text)]).train.progress is value
  assert apply_args(_config(), [('model.hidden', '64')]).model.hidden == (64,)


@pytest.mark.parametrize('path,text,message', [
    ('train.batch_size', 'abc', "--config.train.batch_size='abc': train.batch_size is an int "
                                '(now 128)'),
    ('optimizer.learning_rate', 'fast', 'optimizer.learning_rate is a float'),
    ('train.progress', 'maybe', 'train.progress is a bool (True or False)'),
    ('model.hidden', '(1,', 'model.hidden is a tuple'),
    ('train.num_steps', None, '--config.train.num_steps needs a value'),
    ('model', 'x', 'model is a group; override its fields, e.g. --config.model.activation=...'),
    ('model.foo', '3', "unknown config field 'config.model.foo'; valid fields of model: "
                       'activation, decoder, decoder_activation, hidden, mirror, name, '
                       'output_activation, tied'),
    ('modle.hidden', '(8,)', "unknown config field 'config.modle.hidden'; valid fields of config: "
                             'loss, model, optimizer, preprocessing, seed, train'),
    ('seed.x', '1', "unknown config field 'config.seed.x' (seed is not a group)"),
])
def test_bad_command_line_overrides_are_one_line(path, text, message):
  assert message in _error(apply_args, _config(), [(path, text)])


def test_python_overrides_are_checked_like_the_command_line():
  config = apply(_config(), {'loss.reconstruction.weight': 1, 'seed': 1, 'model.hidden': [4, 2]})
  assert config.loss.reconstruction.weight == 1.0 and isinstance(config.loss.reconstruction.weight,
                                                                  float)
  assert config.seed == 1 and config.model.hidden == (4, 2)
  assert "unknown config field 'config.loss.kl_sparsity.weight'; valid fields of loss: " \
         'reconstruction' in _error(apply, _config(), {'loss.kl_sparsity.weight': 0.3})
  assert _error(apply, _config(), {'seed': True}) == 'config.seed = True: seed is an int (now 0)'
  assert 'train.batch_size is an int' in _error(apply, _config(), {'train.batch_size': 1.5})
  assert 'model.tied is a bool' in _error(apply, _config(), {'model.tied': 1})
  assert 'model is a group of fields' in _error(apply, _config(), {'model': {'hidden': (1,)}})


def test_the_command_line_is_split_into_config_overrides_and_flags():
  spec, changes, rest = cli.split(['--config', 'a.py:tiny', '--config.x.y', '3', '--workdir=w',
                                   '--config.z=-1', '--config.flag', '--steps', '5'])
  assert spec == 'a.py:tiny' and rest == ['--workdir=w', '--steps', '5']
  assert changes == [('x.y', '3'), ('z', '-1'), ('flag', None)]
  assert 'e.g. --config=experiments/mnist_ae.py:tiny' in _error(cli.split, ['--workdir=w'])
  assert '--config is required' in _error(cli.split, ['--config='])
  assert 'given twice' in _error(cli.split, ['--config=a.py', '--config=b.py'])


# --- defaults ----------------------------------------------------------------------------------

def test_loss_defaults_fill_every_option_with_float_weights():
  assert defaults.loss(reconstruction=dict(weight=1.0, kind='bce')).to_dict() == {
      'reconstruction': {'weight': 1.0, 'kind': 'bce', 'reduction': 'mean'}}
  cfg = defaults.loss(kl_sparsity=dict(weight=3, warmup_steps=10), vae_kl=dict(weight=1))
  assert cfg.to_dict() == {'kl_sparsity': {'weight': 3.0, 'rho': 0.05, 'layer': 'code',
                                           'warmup_steps': 10}, 'vae_kl': {'weight': 1.0}}
  assert isinstance(cfg.kl_sparsity.weight, float)
  assert 'valid choices: auxk, code_l2, contractive, decoder_gradient' in _error(
      defaults.loss, sparse=dict(weight=1))
  assert _error(defaults.loss, contractive=dict(weight=1, beta=2)) == (
      "unknown option 'beta' of loss term 'contractive'; valid options: weight, warmup_steps, "
      'method')
  assert "loss term 'vae_kl' has no weight" in _error(defaults.loss, vae_kl=dict())


def test_group_builders_check_their_fields():
  assert defaults.model('conv', latent=8).to_dict() == {
      'name': 'conv', **catalog.options('model', 'conv'), 'latent': 8}
  assert ('valid choices: classifier, conv, dense, factor_vae, hierarchical_vae, sae, vae, '
          'vampprior, vqvae' in _error(defaults.model, 'mlp'))
  assert 'unknown field widths in model' in _error(defaults.model, 'dense', widths=(3,))
  assert 'unknown field eval_every in train' in _error(defaults.train, eval_every=10)
  for gone in ('eval_every', 'eval_batch_size', 'plots'):
    assert gone not in defaults.train()
  assert defaults.optimizer(name='sgd').name == 'sgd'
  assert defaults.input_noise(level=0.5).to_dict() == {**defaults.INPUT_NOISE, 'level': 0.5}
  assert 'unknown field strength in input_noise' in _error(defaults.input_noise, strength=1)
  assert defaults.dataset('mnist').name == 'mnist'


def test_evals_and_evaluators():
  evals = defaults.evals(every=700, batch_size=256).to_dict()
  assert evals == {
      'val': {'type': 'reconstruction', 'split': 'val', 'every': 700, 'batch_size': 256},
      'test': {'type': 'reconstruction', 'split': 'test', 'every': 0, 'batch_size': 256},
      'plots': {'type': 'plots', 'split': 'test', 'every': 0}}
  iwae = defaults.evaluator('iwae', samples=20).to_dict()
  assert iwae == {'type': 'iwae', 'split': 'test', 'every': 0, 'samples': 20, 'batch_size': 100,
                  'memory_mb': 256, 'examples': 0}
  assert "unknown evaluator type 'fid'" in _error(defaults.evaluator, 'fid')
  assert 'unknown field every_n in evaluator' in _error(defaults.evaluator, 'plots', every_n=1)


def test_tiny_images():
  config = ml_collections.ConfigDict(dict(dataset=defaults.dataset('mnist'),
                                          train=defaults.train(), evals=defaults.evals()))
  defaults.tiny_images(config, checkpoint_every=30)
  assert (config.dataset.train_limit, config.dataset.test_limit) == (1000, 500)
  assert (config.train.num_steps, config.train.batch_size, config.train.checkpoint_every) == (
      60, 50, 30)
  assert config.evals.val.every == 0


def test_each_kind_is_declared_once_beside_its_code():
  """A model's, an evaluator's and a dataset's options are the literal its module assigns (read
  by the catalog without importing it; imported, the module holds the same values)."""
  import importlib
  from aelab import corruption
  from aelab.trainer import optim
  for kind, variable in (('model', 'OPTIONS'), ('evaluator', 'OPTIONS'), ('source', 'SOURCES')):
    for name in catalog.names(kind):
      module = importlib.import_module(catalog.module(kind, name))
      declared = getattr(module, variable)
      assert catalog.options(kind, name) == (declared[name] if kind == 'source' else declared)
  assert set(catalog.names('model')) == {'classifier', 'conv', 'dense', 'hierarchical_vae', 'sae',
                                         'vae', 'vampprior', 'vqvae', 'factor_vae'}
  assert 'activations' in catalog.names('source') and 'sae' in catalog.names('evaluator')
  for gone in ('MODELS', 'LOSS_TERMS', 'EVALUATORS'):
    assert not hasattr(defaults, gone)
  assert optim.DEFAULTS is defaults.OPTIMIZER and corruption.DEFAULTS is defaults.INPUT_NOISE


# --- experiments -------------------------------------------------------------------------------

@pytest.mark.parametrize('key', [f'{n}:{v}' for n, vs in VARIANTS.items() for v in vs])
def test_every_experiment_variant_loads(key):
  name, _, variant = key.partition(':')
  config = load(f'{ROOT}/experiments/{name}.py' + (f':{variant}' if variant else ''))
  assert {'seed', 'dataset', 'model', 'loss', 'optimizer', 'train', 'evals'} <= set(config)
  assert config.evals.val.type == 'reconstruction' and 'plots' in config.evals


def test_experiment_variant_errors():
  experiments = ROOT / 'experiments'
  assert "unknown variant 'big'; valid variants (comma-separated): tiny, plain, fashion" == \
      _error(load, f'{experiments}/sparse_l1_mnist.py:big')
  assert 'raw or normalized' in _error(load, f'{experiments}/identity_lowvar.py:raw,normalized')
  assert "unknown variant 'batch=0'" in _error(load, f'{experiments}/bench_dense.py:batch=0')
  assert load(f'{experiments}/identity_lowvar.py').preprocessing == 'per_sample'
  assert load(f'{experiments}/bench_dense.py:tiny,batch=64').train.batch_size == 64


def test_loading_every_experiment_imports_no_jax():
  code = textwrap.dedent(f'''
      import glob, sys
      from aelab.config import load
      variants = {VARIANTS!r}
      for name, vs in variants.items():
        for v in vs:
          load('experiments/' + name + '.py' + (':' + v if v else ''))
      print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'optax', 'tqdm')))
      ''')
  out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                       check=True).stdout
  assert json.loads(out.strip().replace("'", '"')) == []


def test_setting_dataset_name_swaps_in_that_sources_fields():
  from aelab.config import overrides
  config = experiment('sae_toy')
  assert 'dims' in config.dataset
  overrides.apply_args(config, [('dataset.name', 'npz'), ('dataset.path', '/tmp/acts.npz')])
  assert config.dataset.to_dict() == {'name': 'npz', 'path': '/tmp/acts.npz',
                                      'val_fraction': 0.1, 'test_fraction': 0.2}
  overrides.apply(config, {'dataset.name': 'npz'})  # the same source: fields kept
  assert config.dataset.path == '/tmp/acts.npz'
  for order in ([('dataset.path', '/tmp/b.npy'), ('dataset.name', 'npy')],  # name applied first
                [('dataset.name', 'npy'), ('dataset.path', '/tmp/b.npy')]):
    config = experiment('sae_toy')
    overrides.apply_args(config, order)
    assert (config.dataset.name, config.dataset.path) == ('npy', '/tmp/b.npy')
  with pytest.raises(AelabError, match="unknown dataset 'nope'"):
    overrides.apply_args(config, [('dataset.name', 'nope')])
