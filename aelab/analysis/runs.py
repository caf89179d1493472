"""A trained run loaded back from its workdir, and what it computes on raw rows.

    run = runs.load('workdirs/h2o_tanh')         # the latest checkpoint; or load(dir, step=400)
    h1 = runs.features(run, x, layer=1)          # x: raw rows [N, d] in input units
    code = runs.features(run, x, layer='code')
    x_hat = runs.reconstruct(run, x)             # input units (preprocessing inverted)
    z_hat = runs.reconstruct(run, x, space='normalized')   # what the network outputs
    sae = runs.sae_arrays(run)                   # a sparse autoencoder: W_enc, b_enc, W_dec, ...

Every function applies the run's own preprocessing (statistics from its checkpoint) first, so
the numbers are those training and evaluation saw; matmuls run at full float32 precision (no
TF32 / bf16 passes on a GPU or TPU), so numpy on the exported weights reproduces them.
`runs.layers(run)` lists the dense layers as (name, kernel [in, out], bias, activation): each
computes act(h @ kernel + bias). A sparse autoencoder (model 'sae') has one encoder layer, its
latents f (layer 1 = 'code'), computed with the train state's stats from the checkpoint
(`run.model_stats`: BatchTopK's inference threshold), as its evaluation computes them;
`runs.sae_arrays(run)` holds its parameters as the forward pass uses them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np

from aelab import losses, models, preprocessing
from aelab.errors import AelabError
from aelab.trainer import checkpoint
from aelab.trainer.forward import Forward

SPACES = ('input', 'normalized')  # input units, or the preprocessed space the network works in
DEFAULT_BATCH = 1024


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
  """One checkpoint of a run: config, model, parameters and preprocessing (numpy), read back."""
  workdir: pathlib.Path
  step: int
  config: ml_collections.ConfigDict
  forward: Forward = dataclasses.field(repr=False)
  params: dict
  prep: preprocessing.Preprocessor
  feature_shape: tuple[int, ...]
  feature_names: tuple[str, ...] | None
  meta: dict
  model_stats: dict = dataclasses.field(default_factory=dict)  # TrainState.stats (numpy)

  @property
  def mode(self) -> str:
    """The preprocessing mode ('none', 'minmax', 'h2o', 'standardize', 'per_sample')."""
    return self.prep.mode

  @property
  def stats(self) -> dict:
    return self.prep.stats

  @property
  def num_features(self) -> int:
    return math.prod(self.feature_shape)

  @property
  def depth(self) -> int:
    """Number of encoder layers (layer K = depth is the code)."""
    out = jax.eval_shape(_outputs, self.forward, self.params, self.prep,
                         np.zeros((1, *self.feature_shape), np.float32), self.model_stats)
    return len(out['encoder'])


@functools.partial(jax.jit, static_argnums=0)
def _outputs(forward: Forward, params, prep, x, stats) -> dict:
  # Full float32 matmuls (no TF32 / bf16 passes on GPU / TPU), so numpy reproduces the numbers.
  with jax.default_matmul_precision('highest'):
    p = forward.outputs(params, prep, {'x': x}, jax.random.PRNGKey(0), train=False,
                        corrupt=False, stats=stats)
  # A model without a list of encoder layers (the sparse autoencoder) has one: its code.
  encoder = tuple(p.aux['encoder'] if 'encoder' in p.aux else
                  (p.aux['code'],) if 'code' in p.aux else ())
  return {'z': p.z, 'recon': p.recon, 'x_hat': prep.invert(p.recon, p.ctx),
          'encoder': encoder, 'code': p.aux.get('code', encoder[-1] if encoder else p.z)}


def load(workdir: str | pathlib.Path, step: int | None = None) -> Run:
  """Loads checkpoint `step` (default: the latest that verifies) of the run in `workdir`."""
  workdir = pathlib.Path(workdir)
  if not (workdir / 'checkpoints').is_dir():
    raise AelabError(f'{workdir} holds no checkpoints ({workdir / "checkpoints"} is missing); '
                     'point --workdir at a directory that python -m aelab.run trained into')
  with checkpoint.Checkpoints(workdir) as ckpts:
    steps = ckpts.all_steps()
    if not steps:
      raise AelabError(f'{ckpts.directory} holds no finished checkpoint; train (or resume) first')
    if step is not None and step not in steps:
      raise AelabError(f'{workdir} has no checkpoint at step {step}; available steps: '
                       f'{", ".join(map(str, sorted(steps)))}')
    step, arrays, meta = ckpts.restore_raw(step)
  config = ml_collections.ConfigDict(meta['config'])
  feature_shape = tuple(int(d) for d in meta['feature_shape'])
  forward = Forward(models.build(config.model, feature_shape), loss_fn=None)
  params = jax.tree.map(np.asarray, arrays['state']['params'])
  prep = preprocessing.Preprocessor(mode=config.preprocessing, stats={
      k: np.asarray(v) for k, v in (arrays.get('preprocessing') or {}).items()})
  columns = (meta.get('dataset') or {}).get('columns')
  names = tuple(columns) if columns and len(columns) == math.prod(feature_shape) else None
  stats = jax.tree.map(np.asarray, arrays['state'].get('stats') or {})
  return Run(workdir=workdir, step=int(step), config=config, forward=forward, params=params,
             prep=prep, feature_shape=feature_shape, feature_names=names, meta=meta,
             model_stats=stats)


def check_rows(run: Run, x: Any, what: str = 'the input') -> np.ndarray:
  """x as float32 [N, *feature_shape]; flat rows [N, d] are reshaped. Raises on a bad shape/NaN."""
  x = np.asarray(x, dtype=np.float32)
  d = run.num_features
  if x.ndim >= 2 and tuple(x.shape[1:]) == run.feature_shape:
    pass
  elif x.ndim >= 2 and math.prod(x.shape[1:]) == d:
    x = x.reshape(len(x), *run.feature_shape)
  else:
    per_row = math.prod(x.shape[1:]) if x.ndim >= 2 else None
    names = f' ({", ".join(run.feature_names)})' if run.feature_names and d <= 40 else ''
    raise AelabError(f'{what} has {per_row if per_row is not None else "no"} values per row '
                     f'(shape {x.shape}); the model was trained on {d} features per row{names}')
  bad = ~np.isfinite(x)
  if bad.any():
    where = np.argwhere(bad.reshape(len(x), -1))[0]
    col = run.feature_names[where[1]] if run.feature_names else f'feature {where[1]}'
    raise AelabError(f'{what}: row {where[0]}, {col} is {x.reshape(len(x), -1)[tuple(where)]}; '
                     'every value must be finite')
  return x


def outputs(run: Run, x: Any, batch_size: int = DEFAULT_BATCH) -> dict[str, Any]:
  """The forward pass over raw rows x, in batches: numpy 'z', 'recon', 'x_hat', 'encoder',
  'code'."""
  x = check_rows(run, x)
  if batch_size <= 0:
    raise AelabError(f'batch size must be positive; got {batch_size}')
  parts = [jax.device_get(_outputs(run.forward, run.params, run.prep, x[i:i + batch_size],
                                   run.model_stats)) for i in range(0, len(x), batch_size)]
  if not parts:  # no rows (an empty split): the outputs' shapes, from one stand-in row
    one = np.zeros((1, *x.shape[1:]), x.dtype)
    parts = [jax.tree.map(lambda a: a[:0], jax.device_get(
        _outputs(run.forward, run.params, run.prep, one, run.model_stats)))]
  return jax.tree.map(lambda *a: np.concatenate(a, axis=0), *parts)


def features(run: Run, x: Any, layer: int | str, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
  """Activations [N, units] of encoder layer `layer` (1..depth, or 'code') for raw rows x."""
  out = outputs(run, x, batch_size)
  h = losses.layer_activations({'encoder': out['encoder'], 'code': out['code']}, layer)
  h = np.asarray(h)
  return h.reshape(len(h), int(np.prod(h.shape[1:])))


def reconstruct(run: Run, x: Any, space: str = 'input',
                batch_size: int = DEFAULT_BATCH) -> np.ndarray:
  """Reconstructions of raw rows x: in input units (default), or 'normalized' (network output)."""
  check_space(space)
  require_reconstruction(run)
  out = outputs(run, x, batch_size)
  return out['x_hat'] if space == 'input' else out['recon']


def require_reconstruction(run: Run) -> None:
  """A classifier has no reconstruction: one clear line for the verbs that need one."""
  if run.config.model.name == 'classifier':
    raise AelabError(f'{run.workdir} holds a classifier: it has no reconstructions (its '
                     'features and weights are inspected like any run\'s)')


def check_space(space: str) -> None:
  if space not in SPACES:
    raise AelabError(f'unknown space {space!r}; valid spaces: {", ".join(SPACES)}')


class Layer(NamedTuple):
  """One dense layer in forward order: out = activation(h @ kernel + bias), kernel [in, out]."""
  name: str
  kernel: np.ndarray
  bias: np.ndarray
  activation: str


def layers(run: Run) -> list[Layer]:
  """The dense model's layers in forward order (encoder_1..K, decoder_1..M; decoder_M is the
  output layer; M = K when the decoder mirrors the encoder).

  Tied decoder layers get their effective kernel (the encoder kernel transposed), so every
  layer reads the same way: out = act(h @ kernel + bias).
  """
  cfg = run.config.model
  if cfg.name == 'classifier':
    return _classifier_layers(run)
  if cfg.name != 'dense':
    raise AelabError(f'exporting layers needs a dense model (dense or classifier); this run '
                     f'uses {cfg.name!r}')
  from aelab.models import dense  # the dense model's layers, resolved from its config
  shape = dense.resolve(cfg)
  k = len(shape.hidden)
  p = run.params
  out = [Layer(f'encoder_{i + 1}', np.asarray(p[f'encoder_{i + 1}']['kernel']),
               np.asarray(p[f'encoder_{i + 1}']['bias']), shape.activation[i]) for i in range(k)]
  dec_acts = (*shape.decoder_activation, shape.output_activation)
  for i, act in enumerate(dec_acts):
    name = f'decoder_{i + 1}'
    kernel = (np.asarray(p[f'encoder_{k - i}']['kernel']).T if shape.tied
              else np.asarray(p[name]['kernel']))
    out.append(Layer(name, kernel, np.asarray(p[name]['bias']), act))
  return out


def _classifier_layers(run: Run) -> list[Layer]:
  """A classifier's layers: encoder_1..K, then `head` (softmax: the class probabilities)."""
  from aelab.models import activations
  cfg, p = run.config.model, run.params
  acts = activations.per_layer(cfg.activation, len(cfg.hidden)) if len(cfg.hidden) else ()
  out = [Layer(f'encoder_{i + 1}', np.asarray(p[f'encoder_{i + 1}']['kernel']),
               np.asarray(p[f'encoder_{i + 1}']['bias']), act) for i, act in enumerate(acts)]
  return out + [Layer('head', np.asarray(p['head']['kernel']), np.asarray(p['head']['bias']),
                      'softmax')]


INVERSE = {'none': 'x_hat = z_hat',
           'minmax': 'x_hat = (z_hat + 0.5) * range + min',
           'h2o': 'x_hat = z_hat / mul + mean',
           'standardize': 'x_hat = z_hat * std + mean',
           'per_sample': 'x_hat = z_hat * std_i + mean_i (the row\'s own mean and std)'}


def formula(run: Run, through: int | None = None) -> list[str]:
  """The whole computation, raw row x to reconstruction x_hat, one line per step; with
  `through` = K, only as far as encoder layer K (the features of that layer)."""
  lines = [f'{preprocessing.describe(run.mode)}   [preprocessing {run.mode!r}; x is a raw row, '
           f'flattened to {run.num_features} values]']
  if is_sae(run):
    body = _sae_formula(run)
    return lines + (body[:2] if through is not None else body + [INVERSE[run.mode]])
  try:
    net = layers(run)
  except AelabError:
    return lines + [f'network: model {run.config.model.name!r} (see aelab/models)'] + (
        [] if through is not None else ['x_hat = inverse preprocessing of the network output'])
  k = sum(layer.name.startswith('encoder_') for layer in net)
  prev, classifier = 'z', net[-1].name == 'head'
  for i, layer in enumerate(net):
    out = f'h{i + 1}' if i < k else (f'd{i - k + 1}' if i < len(net) - 1 else
                                     'p (class probabilities)' if classifier else 'z_hat')
    role = ' (the code)' if i == k - 1 else ''
    lines.append(f'{out} = {layer.activation}({prev} @ {layer.name}/kernel + {layer.name}/bias)'
                 f'   [{layer.kernel.shape[0]} -> {layer.kernel.shape[1]}]{role}')
    prev = out
  if through is not None:
    return lines[:through + 1]
  if classifier:
    return lines + ['predicted class = argmax p']
  return lines + [INVERSE[run.mode]]


# --- sparse autoencoders ---------------------------------------------------------------------

def is_sae(run: Run) -> bool:
  return run.config.model.name == 'sae'


def require_sae(run: Run, what: str) -> None:
  """One clear line for what only a sparse autoencoder has."""
  if not is_sae(run):
    raise AelabError(f'{what} needs a sparse autoencoder (model \'sae\'); {run.workdir} holds '
                     f'a {run.config.model.name!r} model')


def sae_arrays(run: Run) -> dict[str, np.ndarray]:
  """A sparse autoencoder's parameters as its forward pass uses them: 'W_enc' [d, n], 'b_enc'
  [n], 'W_dec' [n, d] (the decoder used: with normalize_decoder the parameter's rows divided by
  their norms), 'b_dec' [d]; 'threshold' [n] = exp(log_threshold) for JumpReLU; for BatchTopK
  with a trained threshold (the checkpoint's stats) 'batchtopk_threshold' (a scalar)."""
  require_sae(run, 'the parameters of a sparse autoencoder')
  p = run.params
  decoder = run.forward.weights(p, 'decoder')
  out = {'W_enc': np.asarray(p['W_enc']), 'b_enc': np.asarray(p['b_enc']),
         'W_dec': np.asarray(decoder, np.float32), 'b_dec': np.asarray(p['b_dec'])}
  if run.config.model.activation == 'jumprelu':
    out['threshold'] = np.asarray(np.exp(np.asarray(p['log_threshold'])), np.float32)
  if run.config.model.activation == 'batchtopk' and 'threshold' in run.model_stats:
    out['batchtopk_threshold'] = np.asarray(run.model_stats['threshold'], np.float32)
  return out


def _sae_formula(run: Run) -> list[str]:
  """pre, f (the code) and z_hat of a sparse autoencoder, one line each."""
  cfg = run.config.model
  d, n = run.num_features, cfg.latents
  topk = (f'f = relu(pre) at the k = {cfg.k} largest entries of each row of pre'
          f'{" (found by jax.lax.approx_max_k)" if cfg.top_k == "approx" else ""}, 0 elsewhere')
  act = {'relu': 'f = relu(pre)', 'topk': topk,
         'jumprelu': 'f = pre * (pre > threshold), threshold = exp(log_threshold) per latent'}
  if cfg.activation == 'batchtopk':
    t = run.model_stats.get('threshold')
    act['batchtopk'] = (
        topk + ' (BatchTopK without a trained threshold)' if t is None else
        f'f = relu(pre) where pre > batchtopk_threshold = {float(t):.9g} (the BatchTopK '
        'inference threshold set in training), 0 elsewhere')
  unit = (' (W_dec: the rows of the parameter W_dec divided by their norms, as the forward pass '
          'uses them)' if cfg.normalize_decoder else '')
  return [f'pre = (z - b_dec) @ W_enc + b_enc   [{d} -> {n}]',
          f'{act[cfg.activation]}   [{n} latents, the code; latent j (from 0) is f[:, j]]',
          f'z_hat = f @ W_dec + b_dec   [{n} -> {d}]{unit}']
