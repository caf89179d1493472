"""Runs a stacked autoencoder's runs in order in DIR: stage1..stageK, features, finetune, scratch.

Every run is the one trainer's `train_and_evaluate` in its own sub-directory, so a rerun of the
stacked config resumes at the run and the step where it stopped (finished runs say so at once;
the codes each stage hands to the next are written once, atomically). Before anything is
written, stage 1's and the fine-tuned network's configs are built and validated.
"""

from __future__ import annotations

import pathlib
import time

import ml_collections
import numpy as np

from aelab import models
from aelab.analysis import runs
from aelab.data import codes
from aelab.errors import AelabError
from aelab.stacked import configs, report
from aelab.trainer import train, workdir as workdir_lib
from aelab.trainer.setup import build

CODES = 'codes.npz'


def _encode(stage_dir: pathlib.Path) -> pathlib.Path:
  """Every split of the stage's data through its trained encoder: the next stage's data."""
  path = stage_dir / CODES
  if path.exists():
    return path
  run = runs.load(stage_dir)
  ds = run.dataset
  splits = {s: (runs.features(run, getattr(ds, s).x, 'code'), getattr(ds, s).y)
            for s in codes.SPLITS}
  values = np.concatenate([x.ravel() for x, _ in splits.values()])
  unit = values.size and values.min() >= 0 and values.max() <= 1
  codes.write(path, splits, (0.0, 1.0) if unit else None,
              {'encoded_by': str(stage_dir), 'step': run.step})
  return path


def _given(workdir: pathlib.Path, layers: int, config: ml_collections.ConfigDict) -> dict:
  """The fine-tuned network's initial parameters: each stage's encoder layer, then the head of
  the softmax on the frozen features."""
  stages = [runs.load(workdir / f'stage{k + 1}') for k in range(layers)]
  encoder = [s.model.stackable_encoder(s.params)[0] for s in stages]
  softmax = runs.load(workdir / 'features')
  network = models.build(config.model, stages[0].feature_shape)
  return network.assemble(encoder, softmax.model.head_params(softmax.params))


def validate(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> int:
  """Checks every group a run will use (nothing written); returns the number of inputs."""
  configs.check(config)
  first = build(configs.stage(config, 0, None), workdir / 'stage1')
  if not hasattr(first.forward.model, 'stackable_encoder'):
    raise AelabError(f'stack.pretrain.model is {config.stack.pretrain.model.name!r}, whose '
                     'encoder layers cannot be stacked; the stages are dense autoencoders '
                     "(model 'dense')")
  build(configs.classifier(config, 'scratch'), workdir / 'scratch')
  return int(np.prod(first.dataset.feature_shape))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
  """Pretrains every stage, trains the softmax on the frozen features, fine-tunes the network
  (and the from-scratch baseline); returns the stacked summary, or the interrupted run's."""
  t_start = time.time()
  workdir = workdir_lib.check_workdir(workdir)
  inputs = validate(config, workdir)
  results, codes_path = {}, None
  for k in range(len(config.stack.layers)):
    cfg = configs.stage(config, k, codes_path)
    name = f'stage{k + 1}'
    results[name] = train.train_and_evaluate(cfg, workdir / name)
    if 'interrupted' in results[name]:
      return {**results[name], 'run': name}
    codes_path = _encode(workdir / name)
  runs_after = [('features', configs.classifier(config, 'features', codes_path), None),
                ('finetune', configs.classifier(config, 'finetune'), 'given')]
  if config.stack.scratch:
    runs_after.append(('scratch', configs.classifier(config, 'scratch'), None))
  for name, cfg, init in runs_after:
    given = _given(workdir, len(config.stack.layers), cfg) if init else None
    results[name] = train.train_and_evaluate(cfg, workdir / name, init_params=given)
    if 'interrupted' in results[name]:
      return {**results[name], 'run': name}
  if not all(r.get('test') or r.get('val') for r in results.values()):
    raise AelabError(f'a run in {workdir} finished without held-out metrics; is a split empty?')
  return report.write(config, workdir, results, inputs, time.time() - t_start)
