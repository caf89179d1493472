"""Runs a stacked autoencoder's runs in order in DIR: stage1..stageK, features, finetune, scratch.

Every run is the one trainer's `train_and_evaluate` in its own sub-directory, so a rerun of the
stacked config resumes at the run and the step where it stopped (finished runs say so at once;
the codes each stage hands to the next are written once, atomically: one .npz, or above
`stack.codes_in_memory_gib` a directory of .npy shards, each written whole, that the next stage
reads a window at a time; aelab/data/codes.py). Before anything is written, stage 1's and the
fine-tuned network's configs are built and validated.
"""

from __future__ import annotations

import pathlib
import sys
import time

import ml_collections
import numpy as np
import tqdm

from aelab import models
from aelab.analysis import runs
from aelab.data import codes, shard_writer
from aelab.errors import AelabError
from aelab.stacked import configs, report
from aelab.trainer import train, workdir as workdir_lib
from aelab.trainer.setup import build

CODES = 'codes.npz'
CODES_DIR = 'codes'   # the codes as shards, when they exceed stack.codes_in_memory_gib
ENCODE_CHUNK = 16384  # rows encoded at a time into shards


def _encode(stage_dir: pathlib.Path, in_memory_gib: float) -> pathlib.Path:
  """Every split of the stage's data through its trained encoder: the next stage's data. One
  .npz, or where the training codes exceed `in_memory_gib` (or the stage read its data from
  shards) a codes directory whose training codes are shards, encoded a chunk at a time."""
  for path in (stage_dir / CODES, stage_dir / CODES_DIR):
    if path.is_file() or (path / codes.DONE).is_file():
      return path
  run = runs.load(stage_dir)
  ds = run.dataset
  encode = lambda x: runs.features(run, x, 'code')  # noqa: E731
  held = {s: encode(getattr(ds, s).x) for s in ('val', 'test')}
  rows = len(ds.shards) if ds.shards is not None else len(ds.train)
  shape = held['val'].shape[1:]
  if ds.shards is None and rows * 4 * int(np.prod(shape)) <= in_memory_gib * 2**30:
    splits = {'train': (encode(ds.train.x), ds.train.y),
              **{s: (held[s], getattr(ds, s).y) for s in held}}
    values = np.concatenate([x.ravel() for x, _ in splits.values()])
    unit = values.size and values.min() >= 0 and values.max() <= 1
    return codes.write(stage_dir / CODES, splits, (0.0, 1.0) if unit else None,
                       {'encoded_by': str(stage_dir), 'step': run.step})
  read = ds.shards.read if ds.shards is not None else lambda a, n: ds.train.x[a:a + n]
  y_train = ds.shards.labels if ds.shards is not None else ds.train.y
  per_shard = shard_writer.shard_rows(shape, codes.SHARD_BYTES)
  with tqdm.tqdm(total=rows, unit='rows', unit_scale=True, desc=f'encode {stage_dir.name}',
                 file=sys.stderr, disable=None) as bar:
    return codes.write_sharded(
        stage_dir / CODES_DIR, rows, lambda a, n: encode(read(a, n)), per_shard, ENCODE_CHUNK,
        held, {'train': y_train, 'val': ds.val.y, 'test': ds.test.y},
        {'encoded_by': str(stage_dir), 'step': run.step}, progress=bar.update)


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
  _check_sharded(config, first.dataset)
  return int(np.prod(first.dataset.feature_shape))


def _check_sharded(config: ml_collections.ConfigDict, dataset) -> None:
  """Codes that will be shards (over stack.codes_in_memory_gib, or data read from shards) are
  read a window at a time: the runs on them need minibatches."""
  st = config.stack
  rows = len(dataset.shards) if dataset.shards is not None else len(dataset.train)
  limit = float(st.get('codes_in_memory_gib', 1.0))
  for k, width in enumerate(st.layers):
    gib = rows * int(width) * 4 / 2**30
    if dataset.shards is None and gib <= limit:
      continue
    after, group = (f'stage {k + 2}', st.pretrain) if k + 1 < len(st.layers) else \
        ('the softmax on the frozen features', st.features)
    if not group.train.batch_size:
      raise AelabError(
          f"stage {k + 1}'s codes ({gib:.2f} GiB) exceed stack.codes_in_memory_gib = {limit} and "
          f'are written as shards, read a window at a time, but {after} trains on full batches '
          '(train.batch_size = 0); give it a batch size or raise stack.codes_in_memory_gib')


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
    codes_path = _encode(workdir / name, float(config.stack.get('codes_in_memory_gib', 1.0)))
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
