"""A trained run read back from its workdir: its config, checkpoint, model and preprocessing,
its dataset (loaded once, checked against the md5 it was trained on), and what it computes on
raw rows.

    run = runs.load('workdirs/h2o_tanh')         # the latest checkpoint; or load(dir, step=400)
    h1 = runs.features(run, x, layer=1)          # x: raw rows [N, d] in input units
    code = runs.features(run, x, layer='code')
    x_hat = runs.reconstruct(run, x)             # input units (preprocessing inverted)
    z_hat = runs.reconstruct(run, x, space='normalized')   # what the network outputs
    out = run.export()                           # every array by name, the computation by hand
    test = run.dataset.test                      # the run's own split

Every function applies the run's own preprocessing (statistics from its checkpoint) first, so
the numbers are those training and evaluation saw; matmuls run at full float32 precision (no
TF32 / bf16 passes on a GPU or TPU), so numpy on the exported arrays reproduces them. What the
model is and can do, the run asks its model (aelab/models/base.py): `run.model`. The train
state's stats from the checkpoint (`run.model_stats`: BatchTopK's inference threshold) are used
as its evaluation uses them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
import sys
from typing import Any

import jax
import ml_collections
import numpy as np

from aelab import data, losses, models, preprocessing
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
  def model(self) -> models.Model:
    """The model, which says what it is and can do (aelab/models/base.py)."""
    return self.forward.model

  def export(self) -> models.Export:
    """Every array of the model by name, and the computation by hand (host numpy); computed once
    per Run (the weights verb, the headers and the formula all read it)."""
    return self._export

  @functools.cached_property
  def _export(self) -> models.Export:
    return self.model.export(self.params, self.model_stats)

  @functools.cached_property
  def dataset(self) -> data.Dataset:
    """The run's own dataset, as its config and seed define it (loaded once); a warning when its
    file changed since the run was trained (another md5)."""
    ds = data.load(self.config.dataset, seed=int(self.config.seed))
    trained = self.meta.get('dataset') or {}
    if trained.get('md5') and ds.source.get('md5') and trained['md5'] != ds.source['md5']:
      print(f'aelab: warning: {ds.source.get("path")} changed since the run was trained (md5 '
            f'{ds.source["md5"]}, trained on {trained["md5"]}); its splits may hold other rows',
            file=sys.stderr)
    return ds

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
  x_hat = prep.invert(p.recon, p.ctx) if forward.model.RECONSTRUCTS else p.recon
  return {'z': p.z, 'recon': p.recon, 'x_hat': x_hat,
          'encoder': tuple(p.aux['encoder']), 'code': p.aux['code']}


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
  """A model that reconstructs nothing (a classifier): one clear line for the verbs that need it."""
  if not run.model.RECONSTRUCTS:
    raise AelabError(f'{run.workdir} holds a {run.config.model.name!r} model: it has no '
                     'reconstructions (its features and weights are inspected like any run\'s)')


def require_dictionary(run: Run, what: str) -> models.Dictionary:
  """A sparse dictionary's (latents, dead_steps); one clear line for what only it has."""
  found = run.model.dictionary()
  if found is None:
    raise AelabError(f'{what} needs a sparse dictionary (e.g. model \'sae\'); {run.workdir} '
                     f'holds a {run.config.model.name!r} model')
  return found


def check_space(space: str) -> None:
  if space not in SPACES:
    raise AelabError(f'unknown space {space!r}; valid spaces: {", ".join(SPACES)}')


INVERSE = {'none': 'x_hat = z_hat',
           'minmax': 'x_hat = (z_hat + 0.5) * range + min',
           'h2o': 'x_hat = z_hat / mul + mean',
           'standardize': 'x_hat = z_hat * std + mean',
           'per_sample': 'x_hat = z_hat * std_i + mean_i (the row\'s own mean and std)'}


def layer_number(run: Run, layer: int | str) -> int:
  """The number of feature layer `layer` (1..K; 'code': the encoder layer it is, or K + 1 for a
  code apart from the encoder's layers, a VAE's posterior mean)."""
  key = losses.normalize_layer(layer)
  if key != 'code':
    return int(key)
  for step in run.export().steps:
    if 'code' in step.layers:
      numbered = [int(k) for k in step.layers if k.isdigit()]
      return numbered[0] if numbered else run.depth + 1
  return run.depth


def formula(run: Run, through: int | str | None = None) -> list[str]:
  """The whole computation, raw row x to the output, one line per step; with `through` (a
  feature layer: 1..K or 'code'), only as far as that layer."""
  lines = [f'{preprocessing.describe(run.mode)}   [preprocessing {run.mode!r}; x is a raw row, '
           f'flattened to {run.num_features} values]']
  steps = run.export().steps
  if through is None:
    return lines + [s.line for s in steps] + ([INVERSE[run.mode]] if run.model.RECONSTRUCTS else [])
  key = losses.normalize_layer(through)
  last = next((i for i, s in enumerate(steps) if key in s.layers), None)
  if last is None:
    raise AelabError(f'{run.workdir}: the computation by hand has no layer {through!r}; its '
                     f'layers: {", ".join(k for s in steps for k in s.layers)}')
  return lines + [s.line for s in steps[:last + 1]]
