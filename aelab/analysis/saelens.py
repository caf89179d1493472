"""SAELens's SAE directories (`cfg.json` + `sae_weights.safetensors`), out of aelab and back in.

    python -m aelab.inspect weights --workdir=DIR --format=saelens --out=OUT   # write(run, OUT)
    tensors, cfg = saelens.read('OUT')              # the files as they are
    model_cfg, params = saelens.to_aelab('OUT')     # an aelab 'sae' that computes SAELens's latents
    model, params = saelens.build('OUT')            # built: model.apply({'params': params}, x)
    metrics = saelens.evaluate('OUT', dataset_cfg)  # aelab's `sae` evaluator on a dataset's split

The format is SAELens 6's (sae_lens/saes/sae.py: SAE.save_model; sae_lens/constants.py: the file
names); which architecture each activation is, and the tensors, are the sae kind's
(aelab/models/sae_saelens.py). Directories are written whole or not at all.
"""

from __future__ import annotations

import json
import math
import pathlib
import types
from collections.abc import Mapping
from typing import Any

import numpy as np

from aelab import files
from aelab.errors import AelabError
from aelab.models import sae_saelens

CFG_FILE = 'cfg.json'                      # sae_lens/constants.py: SAE_CFG_FILENAME
WEIGHTS_FILE = 'sae_weights.safetensors'   # SAE_WEIGHTS_FILENAME
SPARSITY_FILE = 'sparsity.safetensors'     # SPARSITY_FILENAME (optional; not written)


def require_safetensors():
  """The safetensors package's numpy API, or one line saying how to install it."""
  try:
    from safetensors import numpy as st
  except ImportError:
    raise AelabError("SAELens files need the safetensors package: pip install 'aelab[saelens]' "
                     '(or pip install safetensors)') from None
  return st


# --- aelab -> SAELens ---------------------------------------------------------------------------

def write(source, directory: str | pathlib.Path) -> pathlib.Path:
  """Writes `source` as a SAELens directory (cfg.json, sae_weights.safetensors) that
  sae_lens.SAE.load_from_disk(directory) loads: a runs.Run (its checkpoint's stats, its
  preprocessing folded in) or a model's Export (rows in model space). Replaces a SAELens
  directory; refuses any other non-empty one."""
  from aelab.analysis import runs
  if isinstance(source, runs.Run):
    _require_sae(source)
    tensors, cfg = sae_saelens.to_saelens(source.export(), source.prep,
                               f'run {source.workdir} at step {source.step}')
  else:
    tensors, cfg = sae_saelens.to_saelens(source)
  return write_tensors(tensors, cfg, directory)


def _require_sae(run) -> None:
  from aelab.models import sae
  if not isinstance(run.model, sae.SparseAutoencoder):
    raise AelabError(f'--format=saelens writes sparse autoencoders (model \'sae\'); '
                     f'{run.workdir} holds a {run.config.model.name!r} model')


def check_directory(directory: str | pathlib.Path) -> pathlib.Path:
  """`directory` as a place for a SAELens directory: new, empty, or one (cfg.json in it)."""
  out = pathlib.Path(directory)
  if out.suffix.lower() in ('.npz', '.csv', '.json', '.safetensors'):
    raise AelabError(f'--out={str(out)!r}: --format=saelens writes a directory ({CFG_FILE}, '
                     f'{WEIGHTS_FILE}); give a directory name')
  if out.exists() and (not out.is_dir() or (any(out.iterdir())
                                            and not (out / CFG_FILE).is_file())):
    raise AelabError(f'--out={str(out)!r} exists and is not a SAELens directory (no {CFG_FILE}); '
                     'choose a new directory')
  return out


def write_tensors(tensors: Mapping[str, np.ndarray], cfg: Mapping[str, Any],
                  directory: str | pathlib.Path) -> pathlib.Path:
  """cfg.json and sae_weights.safetensors, written to a temporary directory and renamed into
  place (a reader never sees half a directory)."""
  st = require_safetensors()
  out = check_directory(directory)
  with files.atomic_directory(out) as tmp:
    st.save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()},
                 str(tmp / WEIGHTS_FILE))
    (tmp / CFG_FILE).write_text(json.dumps(cfg))
  return out


# --- SAELens -> aelab ---------------------------------------------------------------------------

def to_aelab(directory: str | pathlib.Path):
  """(config.model, params) of the aelab 'sae' that computes the latents of the SAELens SAE in
  `directory` (aelab/models/sae_saelens.py: from_saelens)."""
  tensors, cfg = read(directory)
  return sae_saelens.from_saelens(tensors, cfg, str(directory))


def read(directory: str | pathlib.Path) -> tuple[dict[str, np.ndarray], dict]:
  """(tensors by name, as stored, and cfg.json's dict) of a SAELens directory."""
  d = pathlib.Path(directory)
  for name in (CFG_FILE, WEIGHTS_FILE):
    if not (d / name).is_file():
      raise AelabError(f'{d} is not a SAELens SAE directory: {name} is missing')
  try:
    cfg = json.loads((d / CFG_FILE).read_text())
  except json.JSONDecodeError as e:
    raise AelabError(f'{d / CFG_FILE} is not valid JSON ({e.msg} at line {e.lineno})') from None
  st = require_safetensors()
  try:
    tensors = st.load_file(str(d / WEIGHTS_FILE))
  except Exception as e:  # pylint: disable=broad-except  (a torn or foreign file: SafetensorError)
    raise AelabError(f'{d / WEIGHTS_FILE} cannot be read as safetensors: '
                     f'{" ".join(str(e).split())}') from None
  if not isinstance(cfg, dict):
    raise AelabError(f'{d / CFG_FILE} holds no JSON object')
  return tensors, cfg


def build(directory: str | pathlib.Path):
  """(the aelab model, its params) of a SAELens directory: model.apply({'params': params}, x)
  gives (x_hat, aux) with aux['code'] SAELens's latents; x is [N, d_in]."""
  from aelab import models
  model_cfg, params = to_aelab(directory)
  return models.build(model_cfg, (int(params['W_dec'].shape[1]),)), params


def evaluate(directory: str | pathlib.Path, dataset, split: str = 'test',
             batch_size: int = 1000) -> dict[str, float]:
  """aelab's `sae` evaluator (l0, variance_explained, dense_fraction, never_fired; with ground
  truth recovered, mean_max_cosine, mcc, uniqueness and, where the split has its true codes,
  precision, recall, f1, shrinkage) of a SAELens SAE on `split` of `dataset`
  (config.dataset, e.g. defaults.dataset('npy') with its path), without preprocessing."""
  import ml_collections

  from aelab import data, preprocessing
  from aelab.evaluators import Context
  from aelab.evaluators import sae as sae_eval
  from aelab.trainer import sharding
  from aelab.trainer.forward import Forward
  from aelab import models
  model_cfg, params = to_aelab(directory)
  model = models.build(model_cfg, (int(params['W_dec'].shape[1]),))
  ds = data.load(dataset, seed=0)
  if math.prod(ds.feature_shape) != model.features:
    raise AelabError(f'{directory}: the SAE takes {model.features} values per row; the dataset '
                     f'has {math.prod(ds.feature_shape)}')
  config = ml_collections.ConfigDict({'model': model_cfg, 'dataset': dataset})
  ctx = Context(config=config, dataset=ds, forward=Forward(model, loss_fn=None),
                mesh=sharding.make_mesh(), unit_interval=False)
  state = types.SimpleNamespace(params=params, stats={}, step=0)
  return sae_eval.Evaluator(ctx, split=split, batch_size=batch_size)(
      state, preprocessing.Preprocessor(mode='none'))
