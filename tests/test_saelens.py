"""SAELens's SAE directories (aelab/analysis/saelens.py, `inspect weights --format=saelens`): the
files' layout against SAELens's own code, write -> read keeping every tensor, and, where sae_lens
is installed, the same latents both ways on 1,000 rows. SAEs are built from `init` with random
parameters (only the mapping is tested); the one run is a checkpoint written by hand."""

import contextlib
import io
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aelab import inspect, models
from aelab.analysis import runs, saelens
from aelab.config import defaults
from aelab.models import sae
from aelab.trainer import checkpoint
from conftest import one_line_error

D, N, K, ROWS = 16, 64, 5, 1000
ACTIVATIONS = [a for a in ('relu', 'topk', 'batchtopk', 'jumprelu', 'gated')
               if a in sae.ACTIVATIONS]
BATCHTOPK_THRESHOLD = 0.7

# Literals from sae_lens 6.54.12. cfg.json: sae_lens/saes/sae.py (SAEConfig's fields; to_dict adds
# metadata and architecture) and sae_lens/saes/topk_sae.py (TopKSAEConfig: k,
# rescale_acts_by_decoder_norm); batchtopk is saved as jumprelu (saes/batchtopk_sae.py:
# get_inference_config_class).
BASE_KEYS = ['d_in', 'd_sae', 'dtype', 'device', 'apply_b_dec_to_input', 'normalize_activations',
             'reshape_activations', 'metadata', 'architecture']
CFG_KEYS = {'standard': BASE_KEYS, 'jumprelu': BASE_KEYS, 'gated': BASE_KEYS,
            'topk': BASE_KEYS + ['k', 'rescale_acts_by_decoder_norm']}
# The state dicts: saes/sae.py initialize_weights (W_enc [d_in, d_sae], W_dec [d_sae, d_in],
# b_dec [d_in]); standard_sae.py and topk_sae.py add b_enc [d_sae]; jumprelu_sae.py b_enc and
# threshold [d_sae]; gated_sae.py b_gate, r_mag, b_mag [d_sae] and no b_enc.
SHAPES = {'W_enc': (D, N), 'W_dec': (N, D), 'b_dec': (D,), 'b_enc': (N,), 'threshold': (N,),
          'b_gate': (N,), 'r_mag': (N,), 'b_mag': (N,)}
NAMES = {'standard': {'W_enc', 'b_enc', 'W_dec', 'b_dec'},
         'topk': {'W_enc', 'b_enc', 'W_dec', 'b_dec'},
         'jumprelu': {'W_enc', 'b_enc', 'W_dec', 'b_dec', 'threshold'},
         'gated': {'W_enc', 'b_gate', 'r_mag', 'b_mag', 'W_dec', 'b_dec'}}
ARCH = {'relu': 'standard', 'topk': 'topk', 'batchtopk': 'jumprelu', 'jumprelu': 'jumprelu',
        'gated': 'gated'}


def _sae(activation: str, seed: int = 0):
  """(model, params, stats): an aelab SAE from `init`, every parameter random (decoder rows of
  norms 0.5-2, so normalize_decoder matters), BatchTopK with a trained threshold."""
  cfg = defaults.model('sae', latents=N, k=K, activation=activation,
                       normalize_decoder=activation != 'relu', b_dec_init='zeros')
  model = models.build(cfg, (D,))
  params = {k: np.asarray(v) for k, v in
            model.init(jax.random.PRNGKey(seed), jnp.zeros((1, D)))['params'].items()}
  rng = np.random.default_rng(seed)
  for name, value in params.items():
    if name == 'W_dec':
      params[name] = value * rng.uniform(0.5, 2.0, (N, 1)).astype(np.float32)
    elif name == 'log_threshold':
      params[name] = np.log(rng.uniform(0.1, 1.0, N)).astype(np.float32)
    else:
      params[name] = (rng.normal(size=value.shape) * 0.4).astype(np.float32)
  stats = model.initial_stats()
  if activation == 'batchtopk':
    stats['threshold'] = jnp.float32(BATCHTOPK_THRESHOLD)
  return model, params, stats


def _rows(seed: int = 9, scale: float = 1.0, shift: float = 0.0) -> np.ndarray:
  return (np.random.default_rng(seed).normal(size=(ROWS, D)) * scale + shift).astype(np.float32)


def _latents(model, params, x, stats=None) -> np.ndarray:
  return np.asarray(model.apply({'params': params}, x, stats=stats)[1]['code'])


def _from_saelens_dir(directory, x) -> np.ndarray:
  model, params = saelens.build(directory)
  return _latents(model, params, x)


@pytest.mark.quick
@pytest.mark.parametrize('activation', ACTIVATIONS)
def test_write_read_keeps_every_tensor_in_saelens_layout_and_computes_the_same_latents(
    activation, tmp_path):
  model, params, stats = _sae(activation)
  export = model.export(params, stats)
  path = saelens.write(export, tmp_path / activation)
  assert sorted(p.name for p in path.iterdir()) == ['cfg.json', 'sae_weights.safetensors']
  tensors, cfg = saelens.read(path)
  arch = ARCH[activation]
  assert set(tensors) == NAMES[arch]
  assert {n: t.shape for n, t in tensors.items()} == {n: SHAPES[n] for n in NAMES[arch]}
  assert all(t.dtype == np.float32 for t in tensors.values())
  assert sorted(cfg) == sorted(CFG_KEYS[arch])
  assert cfg['architecture'] == arch and (cfg['d_in'], cfg['d_sae']) == (D, N)
  assert cfg['apply_b_dec_to_input'] is True and cfg['normalize_activations'] == 'none'
  assert cfg['metadata']['sae_lens_version'].startswith('6.')
  for name in NAMES[arch] - {'threshold'}:  # W_dec as the forward pass uses it (normalized)
    np.testing.assert_array_equal(tensors[name], export.arrays[name])
  if activation == 'topk':
    assert (cfg['k'], cfg['rescale_acts_by_decoder_norm']) == (K, False)
  if activation == 'jumprelu':
    np.testing.assert_array_equal(tensors['threshold'], np.exp(params['log_threshold']))
  if activation == 'batchtopk':
    np.testing.assert_array_equal(tensors['threshold'], np.full(N, BATCHTOPK_THRESHOLD, np.float32))
    assert cfg['metadata']['training_architecture'] == 'batchtopk'
  x = _rows()
  np.testing.assert_allclose(_from_saelens_dir(path, x), _latents(model, params, x, stats),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.quick
def test_batchtopk_without_a_trained_threshold_is_written_as_the_per_example_topk_it_computes(
    tmp_path):
  model, params, _ = _sae('batchtopk')
  path = saelens.write(model.export(params, None), tmp_path / 'btk')
  tensors, cfg = saelens.read(path)
  assert cfg['architecture'] == 'topk' and cfg['k'] == K and set(tensors) == NAMES['topk']
  x = _rows()
  np.testing.assert_allclose(_from_saelens_dir(path, x), _latents(model, params, x), atol=1e-5)


def _edit(path, **changes):
  """A copy of SAELens directory `path` with cfg.json's keys changed (None: removed)."""
  new = path.with_name(f'{path.name}_{len(list(path.parent.iterdir()))}')
  shutil.copytree(path, new)
  cfg = json.loads((new / 'cfg.json').read_text())
  for k, v in changes.items():
    if v is None:
      cfg.pop(k, None)
    else:
      cfg[k] = v
  (new / 'cfg.json').write_text(json.dumps(cfg))
  return new


@pytest.mark.quick
def test_what_aelab_cannot_compute_is_one_line_naming_it(tmp_path):
  model, params, stats = _sae('topk')
  path = saelens.write(model.export(params, stats), tmp_path / 'topk')
  errors = {
      'normalize_activations=\'layer_norm\'': _edit(path, normalize_activations='layer_norm'),
      "architecture 'transcoder'": _edit(path, architecture='transcoder'),
      'before 6.0': _edit(path, metadata={'sae_lens_version': '5.9.1'}),
      'k=100': _edit(path, k=100),
  }
  for needle, bad in errors.items():
    assert needle in one_line_error(saelens.to_aelab, bad)
  torn = _edit(path)
  (torn / 'sae_weights.safetensors').write_bytes(b'\x10' * 100)
  assert 'cannot be read as safetensors' in one_line_error(saelens.read, torn)
  (path / 'cfg.json').unlink()
  assert 'cfg.json is missing' in one_line_error(saelens.read, path)
  bad = _edit(saelens.write(model.export(params, stats), tmp_path / 'x'), architecture='jumprelu')
  assert 'missing threshold' in one_line_error(saelens.to_aelab, bad)
  assert 'not a SAELens directory' in one_line_error(
      saelens.write, model.export(params, stats), tmp_path)   # tmp_path holds other things
  if 'gated' not in sae.ACTIVATIONS:
    gated = _edit(saelens.write(model.export(params, stats), tmp_path / 'g'),
                  architecture='gated')
    assert "activation='gated'" in one_line_error(saelens.to_aelab, gated)


# --- a run and the command ----------------------------------------------------------------------

def _cli(*argv):
  """`python -m aelab.inspect` in-process: (exit code, stdout, stderr)."""
  out, err, code = io.StringIO(), io.StringIO(), 0
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      inspect.run([str(a) for a in argv])
    except SystemExit as e:
      code = e.code
  return code, out.getvalue(), err.getvalue()


def _save_run(workdir, activation: str, preprocessing: str, prep_stats: dict):
  """A run directory as training leaves it (aelab/trainer/workdir.py: the state and the
  preprocessing statistics, the config in the meta), for an SAE from `_sae`: no training."""
  model, params, stats = _sae(activation, seed=3)
  config = {'seed': 0, 'preprocessing': preprocessing,
            'model': json.loads(defaults.model('sae', latents=N, k=K, activation=activation,
                                               b_dec_init='zeros').to_json())}
  state = {'step': np.int32(10), 'params': params,
           'stats': {k: np.asarray(v) for k, v in stats.items()}}
  with checkpoint.Checkpoints(workdir, writer=True) as ckpts:
    ckpts.save(10, {'state': state, 'preprocessing': prep_stats},
               {'config': config, 'preprocessing': preprocessing, 'feature_shape': [D]})
  return runs.load(workdir)


@pytest.fixture(scope='module')
def standardized_run(tmp_path_factory):
  """A BatchTopK run (trained threshold) on inputs standardized with mean 3, std 0.5-4 per
  feature: (the run, raw rows on that scale)."""
  rng = np.random.default_rng(5)
  mean, std = rng.normal(size=D) * 3, rng.uniform(0.5, 4.0, D)
  run = _save_run(tmp_path_factory.mktemp('saelens') / 'run', 'batchtopk', 'standardize',
                  {'mean': mean.astype(np.float32), 'std': std.astype(np.float32)})
  return run, (_rows(seed=11) * std + mean).astype(np.float32)


@pytest.mark.quick
def test_the_command_writes_a_run_with_its_preprocessing_folded_in(standardized_run, tmp_path):
  run, x = standardized_run
  out = tmp_path / 'sae'
  code, stdout, stderr = _cli('weights', f'--workdir={run.workdir}', '--format=saelens',
                              f'--out={out}')
  assert code == 0, stderr
  assert "as a SAELens 'jumprelu' SAE" in stdout and "preprocessing 'standardize'" in stdout
  tensors, cfg = saelens.read(out)
  assert set(tensors) == NAMES['jumprelu']
  assert cfg['metadata']['aelab_preprocessing'] == 'standardize'
  want = runs.features(run, x, 'code')  # on raw rows: the run's preprocessing, then its SAE
  assert (want > 0).sum(axis=1).mean() > 1
  np.testing.assert_allclose(_from_saelens_dir(out, x), want, rtol=1e-5, atol=1e-5)
  assert _cli('weights', f'--workdir={run.workdir}', '--format=saelens', f'--out={out}')[0] == 0
  code, _, stderr = _cli('weights', f'--workdir={run.workdir}', '--format=saelens',
                         f'--out={tmp_path / "w.npz"}')
  assert code == 2 and 'give a directory name' in stderr
  code, _, stderr = _cli('weights', f'--workdir={run.workdir}', f'--out={tmp_path / "w.npz"}')
  assert code == 0, stderr   # the default format: aelab's arrays, as before
  assert 'batchtopk_threshold' in np.load(tmp_path / 'w.npz')


@pytest.mark.quick
def test_a_run_with_per_example_preprocessing_cannot_be_folded(tmp_path):
  run = _save_run(tmp_path / 'run', 'topk', 'per_sample', {})
  assert "preprocessing 'per_sample'" in one_line_error(saelens.write, run, tmp_path / 'out')


@pytest.mark.quick
def test_aelabs_sae_evaluator_scores_a_saelens_directory(tmp_path):
  model, params, stats = _sae('topk')
  path = saelens.write(model.export(params, stats), tmp_path / 'sae')
  x = _rows()
  np.save(tmp_path / 'acts.npy', x)
  dataset = defaults.dataset('npy')
  dataset.update(path=str(tmp_path / 'acts.npy'), val_fraction=0.1, test_fraction=0.5)
  metrics = saelens.evaluate(path, dataset, split='test')
  assert metrics['l0'] == pytest.approx(K)
  recon = np.asarray(model.apply({'params': params}, x[500:])[0], np.float64)
  test = x[500:].astype(np.float64)
  fve = 1 - ((recon - test) ** 2).sum() / ((test - test.mean(0)) ** 2).sum()
  assert metrics['variance_explained'] == pytest.approx(fve, abs=1e-4)


# --- against sae_lens itself (skipped where it is not installed) --------------------------------

@pytest.fixture(scope='module')
def sae_lens():
  return pytest.importorskip('sae_lens', reason='sae_lens is not installed (pip install sae-lens)')


def _encode(sae_lens_sae, x) -> np.ndarray:
  import torch
  with torch.no_grad():
    return sae_lens_sae.encode(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize('activation', ACTIVATIONS)
def test_sae_lens_loads_aelabs_saes_and_encodes_aelabs_latents(sae_lens, activation, tmp_path):
  model, params, stats = _sae(activation)
  path = saelens.write(model.export(params, stats), tmp_path / activation)
  loaded = sae_lens.SAE.load_from_disk(path)
  assert loaded.cfg.architecture() == ARCH[activation]
  x = _rows(scale=2.0, shift=0.5)
  want = _latents(model, params, x, stats)
  assert (want > 0).sum(axis=1).mean() >= 3  # latents that fire, and ones that do not
  assert (want == 0).mean() > 0.3
  np.testing.assert_allclose(_encode(loaded, x), want, rtol=1e-5, atol=1e-5)


def test_sae_lens_loads_what_the_command_wrote_and_encodes_raw_rows(sae_lens, standardized_run,
                                                                   tmp_path):
  run, x = standardized_run
  assert _cli('weights', f'--workdir={run.workdir}', '--format=saelens',
              f'--out={tmp_path / "sae"}')[0] == 0
  loaded = sae_lens.SAE.load_from_disk(tmp_path / 'sae')
  np.testing.assert_allclose(_encode(loaded, x), runs.features(run, x, 'code'),
                             rtol=1e-5, atol=1e-5)


def _sae_lens_sae(sae_lens, arch: str, **cfg):
  """A SAELens inference SAE with random weights (every tensor), seeded."""
  import torch
  from sae_lens import saes
  classes = {'standard': (saes.StandardSAE, saes.StandardSAEConfig),
             'topk': (saes.TopKSAE, saes.TopKSAEConfig),
             'jumprelu': (saes.JumpReLUSAE, saes.JumpReLUSAEConfig),
             'gated': (saes.GatedSAE, saes.GatedSAEConfig)}
  sae_cls, cfg_cls = classes[arch]
  torch.manual_seed(0)
  out = sae_cls(cfg_cls(d_in=D, d_sae=N, **cfg))
  with torch.no_grad():
    for name, p in out.named_parameters():
      p.copy_(torch.randn_like(p) * 0.4)
      if name == 'W_dec':
        p.mul_(torch.rand(N, 1) * 1.5 + 0.5)
      if name == 'threshold':   # mostly positive; some <= 0 (as 0 in SAELens)
        p.copy_(torch.rand(N) * 0.9 + 0.1)
        p[:4] = torch.tensor([0.0, -0.5, 0.0, -1.0])
  return out


def _batchtopk(sae_lens, path):
  """A BatchTopK training SAE saved for inference as SAELens does (a JumpReLU SAE)."""
  import torch
  from sae_lens import saes
  torch.manual_seed(1)
  t = saes.BatchTopKTrainingSAE(saes.BatchTopKTrainingSAEConfig(d_in=D, d_sae=N, k=K))
  with torch.no_grad():
    for name, p in t.named_parameters():
      p.copy_(torch.randn_like(p) * 0.4 * (2.0 if name == 'W_dec' else 1.0))
  t.topk_threshold = torch.tensor(0.6, dtype=torch.double)
  t.save_inference_model(path)
  return sae_lens.SAE.load_from_disk(path)


SAE_LENS_KINDS = {'standard': ('standard', {}),
                  'standard, b_dec not subtracted': ('standard', {'apply_b_dec_to_input': False}),
                  'topk': ('topk', {'k': K}),
                  'topk, acts rescaled by decoder norm': (
                      'topk', {'k': K, 'rescale_acts_by_decoder_norm': True}),
                  'jumprelu': ('jumprelu', {}),
                  'batchtopk (saved as jumprelu)': ('batchtopk', {}),
                  'gated': ('gated', {})}


@pytest.mark.parametrize('kind', SAE_LENS_KINDS)
def test_aelab_reads_sae_lens_saes_and_computes_their_latents(sae_lens, kind, tmp_path):
  arch, cfg = SAE_LENS_KINDS[kind]
  path = tmp_path / 'sae'
  if arch == 'batchtopk':
    made = _batchtopk(sae_lens, path)
  else:
    made = _sae_lens_sae(sae_lens, arch, **cfg)
    made.save_model(path)
  if arch == 'gated' and 'gated' not in sae.ACTIVATIONS:
    assert "activation='gated'" in one_line_error(saelens.to_aelab, path)
    pytest.skip("aelab's models/sae.py has no activation='gated' yet")
  x = _rows(scale=2.0)
  want = _encode(made, x)
  assert (want > 0).sum(axis=1).mean() >= 3 and (want == 0).mean() > 0.3
  np.testing.assert_allclose(_from_saelens_dir(path, x), want, rtol=1e-5, atol=1e-5)
