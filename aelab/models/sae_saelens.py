"""The sparse autoencoder (aelab/models/sae.py) in SAELens 6's terms: which architecture each
activation is, the tensors of each (sae_lens/saes/{standard,topk,jumprelu,gated}_sae.py), cfg.json's
dict (sae_lens/saes/sae.py: SAEConfig.to_dict), and the mapping both ways. The files themselves
are read and written by aelab/analysis/saelens.py.

| aelab activation        | SAELens architecture | tensors                                   |
| relu                    | standard             | W_enc, b_enc, W_dec, b_dec                |
| topk                    | topk (k)             | W_enc, b_enc, W_dec, b_dec                |
| batchtopk (trained)     | jumprelu             | + threshold: the trained scalar per latent |
| jumprelu                | jumprelu             | + threshold = exp(log_threshold)          |
| gated                   | gated                | W_enc, b_gate, r_mag, b_mag, W_dec, b_dec |

A BatchTopK SAE is saved as SAELens saves its own (sae_lens/saes/batchtopk_sae.py,
process_state_dict_for_saving_inference): a JumpReLU SAE whose threshold is the trained scalar
for every latent; one without a trained threshold (stats absent) computes per-example top k, and
is written as topk. W_dec is the decoder the forward pass uses (rows divided by their norms with
normalize_decoder). A run's per-feature preprocessing (minmax, h2o, standardize) is folded into
W_enc, W_dec and b_dec, so the SAELens SAE takes raw rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from aelab.errors import AelabError

FORMAT_VERSION = '6.54.12'  # the SAELens release whose format this writes (and was tested with)
# aelab activation -> SAELens architecture (batchtopk: jumprelu with a trained threshold).
ARCHITECTURE = {'relu': 'standard', 'topk': 'topk', 'batchtopk': 'jumprelu',
                'jumprelu': 'jumprelu', 'gated': 'gated'}
# Each SAELens architecture's tensors (sae_lens/saes/{standard,topk,jumprelu,gated}_sae.py).
TENSORS = {'standard': ('W_enc', 'b_enc', 'W_dec', 'b_dec'),
           'topk': ('W_enc', 'b_enc', 'W_dec', 'b_dec'),
           'jumprelu': ('W_enc', 'b_enc', 'W_dec', 'b_dec', 'threshold'),
           'gated': ('W_enc', 'b_gate', 'r_mag', 'b_mag', 'W_dec', 'b_dec')}
PER_LATENT = ('b_enc', 'threshold', 'b_gate', 'r_mag', 'b_mag')   # shape [d_sae]
# How SAELens turns a preprocessing into its own inputs: the per-feature affine ones fold.
FOLDABLE = ('none', 'minmax', 'h2o', 'standardize')


def to_saelens(export, prep=None, source: str | None = None) -> tuple[dict, dict]:
  """(tensors, cfg) of SAELens's files for an aelab SAE's export (model.export(params, stats)),
  with `prep` (a Preprocessor, or None for rows in model space) folded in."""
  extras = export.extras
  if 'activation' not in extras or 'W_dec' not in export.arrays:
    raise AelabError('SAELens files hold sparse autoencoders (model \'sae\'); this export is of '
                     'another model')
  activation = str(extras['activation'])
  arrays = export.arrays
  if activation == 'batchtopk':
    architecture = 'jumprelu' if 'batchtopk_threshold' in arrays else 'topk'
  else:
    architecture = ARCHITECTURE.get(activation)
  if architecture is None:
    raise AelabError(f'aelab activation {activation!r} has no SAELens architecture; '
                     f'SAELens files hold {", ".join(ARCHITECTURE)}')
  missing = [n for n in TENSORS[architecture] if n not in arrays and n != 'threshold']
  if missing:
    raise AelabError(f'the export of this {activation!r} SAE lacks {", ".join(missing)}, which '
                     f'SAELens\'s {architecture!r} architecture needs')
  tensors = {n: np.asarray(arrays[n], np.float32) for n in TENSORS[architecture]
             if n != 'threshold'}
  n = tensors['W_dec'].shape[0]
  if architecture == 'jumprelu':
    threshold = arrays['threshold'] if activation == 'jumprelu' else np.full(
        n, np.float32(arrays['batchtopk_threshold']))
    tensors['threshold'] = np.asarray(threshold, np.float32)
  if prep is not None:
    tensors = fold_preprocessing(tensors, prep)
  k = math.ceil(float(extras['k']))  # BatchTopK without a threshold keeps the top ceil(k)
  return tensors, config(architecture, tensors, k, activation, bool(extras['normalize_decoder']),
                         source, prep)


def config(architecture: str, tensors: Mapping[str, np.ndarray], k: int, activation: str,
           normalize_decoder: bool, source: str | None = None, prep=None) -> dict:
  """cfg.json's dict in the key order SAELens writes (SAEConfig.to_dict: its fields, then
  metadata, then the architecture's own fields, then architecture)."""
  d_sae, d_in = tensors['W_dec'].shape
  metadata = {'sae_lens_version': FORMAT_VERSION, 'sae_lens_training_version': None,
              'training_architecture': 'batchtopk' if activation == 'batchtopk' else
              ARCHITECTURE.get(activation, architecture),
              'aelab_activation': activation, 'aelab_normalize_decoder': normalize_decoder}
  if activation in ('topk', 'batchtopk'):
    metadata['aelab_k'] = k
  if activation == 'batchtopk':  # as SAELens records its own BatchTopK SAEs
    metadata['training_architecture_details'] = {'k': k}
  if source:
    metadata['aelab_source'] = source
  if prep is not None:
    metadata['aelab_preprocessing'] = prep.mode
  cfg = {'d_in': int(d_in), 'd_sae': int(d_sae), 'dtype': 'float32', 'device': 'cpu',
         'apply_b_dec_to_input': True, 'normalize_activations': 'none',
         'reshape_activations': 'none', 'metadata': metadata}
  if architecture == 'topk':
    cfg.update(k=int(k), rescale_acts_by_decoder_norm=False)
  cfg['architecture'] = architecture
  return cfg


def _affine(prep) -> tuple[np.ndarray, np.ndarray] | None:
  """(c, s) with z = (x - c) * s per feature (float64, flat), or None for 'none'."""
  mode, stats = prep.mode, prep.stats
  if mode not in FOLDABLE:
    raise AelabError(f'preprocessing {mode!r} is not a per-feature affine map, so it cannot be '
                     'folded into SAELens weights; SAELens files hold runs with preprocessing '
                     f'{", ".join(FOLDABLE)}')
  if mode == 'none':
    return None
  flat = {k: np.asarray(v, np.float64).reshape(-1) for k, v in stats.items()}
  if mode == 'minmax':  # z = (x - min) / range - 0.5
    return flat['min'] + 0.5 * flat['range'], 1.0 / flat['range']
  if mode == 'h2o':     # z = (x - mean) * mul
    return flat['mean'], flat['mul']
  return flat['mean'], 1.0 / flat['std']   # standardize


def fold_preprocessing(tensors: Mapping[str, np.ndarray], prep) -> dict[str, np.ndarray]:
  """The tensors of the same SAE on raw rows x, where aelab's works on z = (x - c) * s:
  W_enc' = s W_enc (row-wise), W_dec' = W_dec / s (column-wise), b_dec' = c + b_dec / s, so that
  (x - b_dec') W_enc' = (z - b_dec) W_enc and f W_dec' + b_dec' = (f W_dec + b_dec) / s + c."""
  affine = _affine(prep)
  if affine is None:
    return dict(tensors)
  c, s = affine
  out = dict(tensors)
  w_enc, w_dec = (np.asarray(tensors[n], np.float64) for n in ('W_enc', 'W_dec'))
  if len(s) != w_enc.shape[0]:
    raise AelabError(f'internal: preprocessing statistics of {len(s)} features for an SAE of '
                     f'{w_enc.shape[0]}')
  out['W_enc'] = (s[:, None] * w_enc).astype(np.float32)
  out['W_dec'] = (w_dec / s[None, :]).astype(np.float32)
  out['b_dec'] = (c + np.asarray(tensors['b_dec'], np.float64) / s).astype(np.float32)
  return out


def _version(cfg: Mapping[str, Any]) -> str | None:
  meta = cfg.get('metadata') if isinstance(cfg.get('metadata'), dict) else {}
  return cfg.get('sae_lens_version') or meta.get('sae_lens_version')


def check_config(cfg: Mapping[str, Any], where: str) -> str:
  """The architecture of a SAELens 6 cfg.json that aelab computes exactly; one line naming what
  it cannot (another architecture, input normalization, a pre-6 file)."""
  version = _version(cfg)
  major = str(version).split('.')[0] if version else ''
  if not major.isdigit() or int(major) < 6:
    raise AelabError(f'{where}: a SAELens cfg.json before 6.0 (sae_lens_version {version}); '
                     'load it with sae_lens 6 and save it again (SAE.load_from_disk(path)'
                     '.save_model(new_path))')
  arch = cfg.get('architecture')
  if arch not in TENSORS:
    raise AelabError(f'{where}: SAELens architecture {arch!r} has no aelab counterpart; aelab '
                     f'reads {", ".join(TENSORS)}')
  norm = cfg.get('normalize_activations', 'none')
  if norm != 'none':
    hint = (' (fold its scaling factor first: sae.fold_activation_norm_scaling_factor(factor), '
            'then save_model)' if norm == 'expected_average_only_in' else '')
    raise AelabError(f'{where}: normalize_activations={norm!r}: aelab\'s SAE takes the inputs as '
                     f'they are, and reads only \'none\'{hint}')
  if cfg.get('reshape_activations', 'none') not in ('none', 'hook_z'):
    raise AelabError(f'{where}: reshape_activations={cfg["reshape_activations"]!r}: aelab reads '
                     "'none' and 'hook_z' (flat rows)")
  if cfg.get('finetuning_scaling_factor'):
    raise AelabError(f'{where}: finetuning_scaling_factor is set; aelab has no such factor')
  if arch == 'topk':
    k = cfg.get('k')
    if not isinstance(k, int) or not 1 <= k <= int(cfg.get('d_sae', 0)):
      raise AelabError(f'{where}: topk k={k!r} is not an integer between 1 and d_sae = '
                       f'{cfg.get("d_sae")}')
  return arch


def _check_tensors(tensors: Mapping[str, np.ndarray], arch: str, cfg: Mapping[str, Any],
                   where: str) -> dict[str, np.ndarray]:
  """The architecture's tensors as float32 (SAELens casts them to the cfg's dtype when it
  loads; aelab computes in float32), their names and shapes checked."""
  names = set(TENSORS[arch])
  missing, extra = sorted(names - set(tensors)), sorted(set(tensors) - names)
  if missing or extra:
    raise AelabError(f'{where}: a SAELens {arch!r} SAE holds {", ".join(TENSORS[arch])}; '
                     + (f'missing {", ".join(missing)}' if missing else '')
                     + ('; ' if missing and extra else '')
                     + (f'unexpected {", ".join(extra)}' if extra else ''))
  d_in, d_sae = tensors['W_enc'].shape if tensors['W_enc'].ndim == 2 else (None, None)
  shapes = {'W_enc': (d_in, d_sae), 'W_dec': (d_sae, d_in), 'b_dec': (d_in,),
            **{n: (d_sae,) for n in PER_LATENT}}
  for n in TENSORS[arch]:
    if tuple(tensors[n].shape) != shapes[n] or tensors[n].dtype.kind != 'f':
      raise AelabError(f'{where}: tensor {n} has shape {list(tensors[n].shape)} '
                       f'({tensors[n].dtype}); W_enc [d_in, d_sae] = {list(tensors["W_enc"].shape)}'
                       f' makes it {list(shapes[n])} (float)')
  if (cfg.get('d_in'), cfg.get('d_sae')) != (d_in, d_sae):
    raise AelabError(f'{where}: cfg.json says d_in = {cfg.get("d_in")}, d_sae = '
                     f'{cfg.get("d_sae")}; W_enc has shape {[d_in, d_sae]}')
  return {n: np.asarray(tensors[n], np.float32) for n in TENSORS[arch]}


def from_saelens(tensors: Mapping[str, np.ndarray], cfg: Mapping[str, Any], where: str):
  """(config.model, params) of the aelab 'sae' whose latents (aux['code'], `encode`) are those
  of SAELens's sae.encode(x) on flat rows x [N, d_in], loaded with dtype='float32' (its
  cfg.json's dict and its tensors; `where` names them in errors):
  standard -> relu, topk -> topk (rescale_acts_by_decoder_norm: the norms folded into W_enc and
  b_enc, normalize_decoder on), jumprelu -> jumprelu (log_threshold = log(threshold); a threshold
  <= 0 acts as 0 in SAELens and is -inf here), gated -> gated; apply_b_dec_to_input=False is
  folded into the encoder biases (b_enc + b_dec @ W_enc)."""
  from aelab.config import defaults
  from aelab.models import sae
  arch = check_config(cfg, where)
  t = {n: v.astype(np.float64) for n, v in _check_tensors(tensors, arch, cfg, where).items()}
  activation = {'standard': 'relu', 'topk': 'topk', 'jumprelu': 'jumprelu',
                'gated': 'gated'}[arch]
  if activation not in sae.ACTIVATIONS:
    raise AelabError(f'{where}: a SAELens {arch!r} SAE needs aelab\'s activation={activation!r}, '
                     'which this aelab\'s models/sae.py does not have')
  d_sae, d_in = t['W_dec'].shape
  params = {n: t[n] for n in ('W_enc', 'W_dec', 'b_dec')}
  enc_biases = ('b_gate', 'b_mag') if arch == 'gated' else ('b_enc',)
  for b in enc_biases:
    params[b] = t[b]
  if arch == 'gated':
    params['r_mag'] = t['r_mag']
  if not cfg.get('apply_b_dec_to_input', True):  # x @ W + b = (x - b_dec) @ W + (b + b_dec @ W)
    params['b_enc' if arch != 'gated' else 'b_gate'] = (
        params['b_enc' if arch != 'gated' else 'b_gate'] + t['b_dec'] @ t['W_enc'])
    if arch == 'gated':
      params['b_mag'] = params['b_mag'] + t['b_dec'] @ (t['W_enc'] * np.exp(t['r_mag']))
  normalize = arch == 'topk' and bool(cfg.get('rescale_acts_by_decoder_norm', False))
  if normalize:  # pre * ||W_dec_j||, decoded by W_dec_j / ||W_dec_j||: aelab's normalize_decoder
    norms = np.linalg.norm(t['W_dec'], axis=1)
    params['W_enc'] = params['W_enc'] * norms[None, :]
    params['b_enc'] = params['b_enc'] * norms
  if arch == 'jumprelu':
    with np.errstate(divide='ignore'):
      params['log_threshold'] = np.log(np.maximum(t['threshold'], 0.0))
  k = int(cfg['k']) if arch == 'topk' else min(int(sae.OPTIONS['k']), int(d_sae))
  model_cfg = defaults.model('sae', latents=int(d_sae), activation=activation, k=k,
                             normalize_decoder=normalize, b_dec_init='zeros')
  return model_cfg, {n: np.asarray(v, np.float32) for n, v in params.items()}
