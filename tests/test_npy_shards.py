"""Dataset `npy` with separate val/test files, and a directory of .npy shards read from disk in
order with a shuffle buffer (aelab/data/npy.py, aelab/trainer/shard_batches.py): the order is a
pure function of (seed, epoch, step), a block uses at most two windows and reads the next one
ahead, a shard is never read whole, a run on shards trains and resumes bit for bit."""

import jax
import numpy as np
import pytest

from aelab import data
from aelab.config import defaults
from aelab.trainer import checkpoint, shard_batches, sharding, train
from aelab.trainer.setup import build
from aelab.trainer.shard_batches import ShardBatches, ShardOrder
from aelab.trainer.writers import read_jsonl
from conftest import experiment, one_line_error

SIZES = (70, 50, 90)


def _shards(directory, sizes=SIZES, width=3):
  """Shards whose row r (of the concatenation in name order) holds the value r in every column."""
  directory.mkdir(exist_ok=True)
  start = 0
  for i, n in enumerate(sizes):
    rows = np.repeat(np.arange(start, start + n, dtype=np.float64)[:, None], width, axis=1)
    np.save(directory / f'part{i:03d}.npy', rows.astype(np.float32))
    start += n
  return directory


def _load(directory, **fields):
  return data.load({'name': 'npy', 'path': str(directory), **fields}, seed=0)


def _batches(tmp_path, buffer=40, batch=8, seed=3, sizes=SIZES):
  ds = _load(_shards(tmp_path / 'shards', sizes), shuffle_buffer=buffer, val_fraction=0.0,
             test_fraction=0.0)
  return ShardBatches(ds.shards, batch, seed, sharding.make_mesh())


@pytest.mark.quick
def test_each_epoch_is_a_permutation_of_every_row_new_each_epoch_and_fixed_by_the_seed():
  order = ShardOrder(SIZES, seed=5, buffer=40)
  epochs = [order.epoch(e) for e in range(3)]
  for rows in epochs:
    np.testing.assert_array_equal(np.sort(rows), np.arange(sum(SIZES)))
  assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
  np.testing.assert_array_equal(ShardOrder(SIZES, seed=5, buffer=40).epoch(1), epochs[1])
  assert not np.array_equal(ShardOrder(SIZES, seed=6, buffer=40).epoch(1), epochs[1])
  # Windows: N // W of them, equal within a row, each at least W and under 2W rows.
  sizes = np.diff(order.bounds)
  assert len(sizes) == sum(SIZES) // 40 and sizes.min() >= 40 and sizes.max() < 80


@pytest.mark.quick
def test_blocks_at_any_start_give_the_rows_of_the_unbroken_sequence(tmp_path, monkeypatch):
  batches = _batches(tmp_path)
  spe, b = batches.steps_per_epoch, batches.batch_size
  assert spe == sum(SIZES) // b
  unbroken = batches.row_ids(0, 3 * spe)
  for e in range(3):  # the definition: batch i of epoch e is the epoch order's rows i*B..(i+1)*B
    np.testing.assert_array_equal(unbroken[e * spe:(e + 1) * spe].ravel(),
                                  batches.order.epoch(e)[:spe * b])
  fresh = _batches(tmp_path, seed=3)  # a resumed run: new object, any start
  monkeypatch.setattr(shard_batches, 'READ_BYTES', 20)  # reads cut mid-row (rows of 12 bytes)
  for start, k in ((0, 5), (spe - 2, 5), (2 * spe - 1, 3), (7, 1), (spe, spe)):
    source, none = fresh.block(start, k)
    assert none is None and source['x'].shape == (k, b, 3)
    np.testing.assert_array_equal(np.asarray(source['x'])[..., 0], unbroken[start:start + k])


def test_labelled_shards_give_each_row_its_own_label(tmp_path):
  """Shards with labels (a `codes` directory's): y of every batch is the label of its x's row."""
  import dataclasses
  plain = _batches(tmp_path)
  labels = (np.arange(sum(SIZES)) * 7 % 11).astype(np.int32)
  shards = dataclasses.replace(_load(tmp_path / 'shards', shuffle_buffer=40, val_fraction=0.0,
                                     test_fraction=0.0).shards, labels=labels)
  batches = ShardBatches(shards, 8, 3, sharding.make_mesh())
  for start, k in ((0, 4), (plain.steps_per_epoch - 1, 3)):
    source, _ = batches.block(start, k)
    rows = np.asarray(source['x'])[..., 0].astype(np.int64)
    np.testing.assert_array_equal(rows, plain.row_ids(start, k))
    np.testing.assert_array_equal(np.asarray(source['y']), labels[rows])
  assert 'y' not in plain.block(0, 1)[0]


@pytest.mark.quick
def test_a_block_uses_at_most_two_windows_reads_the_next_ahead_and_reads_each_once(tmp_path):
  sizes = (300, 300, 300)
  batches = _batches(tmp_path, buffer=40, batch=8, sizes=sizes)  # k * B = 32 <= W
  reads = []
  read = batches._read
  batches._read = lambda shard, a, b, out: reads.append((shard, a, b)) or read(shard, a, b, out)
  buffers, m = set(), len(batches.order.bounds) - 1
  for start in range(0, 3 * batches.steps_per_epoch, 4):  # 112 steps an epoch: 28 blocks
    batches.block(start, 4)
    used = set(batches._windows)
    assert len(used) <= 2 and len(batches._ahead) == 1
    e, w = max(used)
    assert set(batches._ahead) == {(e, w + 1) if w + 1 < m else (e + 1, 0)}   # the next one
    ahead = batches._ahead[next(iter(batches._ahead))].result()
    buffers |= {id(x.base) for x in (*batches._windows.values(), ahead)}
  assert len(buffers) <= 3   # memory: three windows at most, reused
  assert max(b - a for _, a, b in reads) < 80 < 300  # a piece of a window, never a shard
  ahead_rows = len(ahead)    # epoch 3's first window, read ahead
  assert sum(b - a for _, a, b in reads) == 3 * sum(sizes) + ahead_rows  # every row read once


@pytest.mark.quick
def test_val_and_test_from_separate_files_or_the_end_of_the_last_shard(tmp_path):
  rows = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
  for name, part in (('train', rows[:30]), ('val', rows[30:35]), ('test', rows[35:])):
    np.save(tmp_path / f'{name}.npy', part)
  held = {'val_path': str(tmp_path / 'val.npy'), 'test_path': str(tmp_path / 'test.npy')}
  ds = _load(tmp_path / 'train.npy', **held)
  assert ds.shards is None and (len(ds.train), len(ds.val), len(ds.test)) == (30, 5, 5)
  assert all(isinstance(s.x, np.memmap) for s in (ds.train, ds.val, ds.test))
  np.testing.assert_array_equal(ds.val.x, rows[30:35])
  directory = _shards(tmp_path / 'shards', width=4)
  ds = _load(directory, **held)
  assert ds.shards.rows == SIZES and len(ds.test) == 5
  assert len(ds.train) == SIZES[0] and isinstance(ds.train.x, np.memmap)  # the first shard
  ds = _load(directory, val_fraction=0.1, test_fraction=0.2)  # from the last shard's end
  assert ds.shards.rows == (70, 50, 63) and (len(ds.val), len(ds.test)) == (9, 18)
  np.testing.assert_array_equal(ds.test.x[:, 0], np.arange(192, 210))
  np.testing.assert_array_equal(ds.val.x[:, 0], np.arange(183, 192))


@pytest.mark.quick
def test_bad_shards_and_files_are_one_line_errors(tmp_path):
  good = _shards(tmp_path / 'good')
  np.save(tmp_path / 'narrow.npy', np.zeros((5, 2), np.float32))
  assert 'every file of dataset npy must have the same row shape' in one_line_error(
      _load, good, val_path=str(tmp_path / 'narrow.npy'), test_path=str(good / 'part000.npy'))
  assert 'give both dataset.val_path and dataset.test_path' in one_line_error(
      _load, good, val_path=str(good / 'part000.npy'))
  mixed = _shards(tmp_path / 'mixed')
  np.save(mixed / 'part009.npy', np.zeros((5, 2), np.float32))
  assert 'same row shape' in one_line_error(_load, mixed)
  f64 = _shards(tmp_path / 'f64')
  np.save(f64 / 'part001.npy', np.zeros((5, 3), np.float64))
  assert 'holds float64' in one_line_error(_load, f64)
  (tmp_path / 'empty').mkdir()
  assert 'no .npy files' in one_line_error(_load, tmp_path / 'empty')
  bad = _shards(tmp_path / 'nan', sizes=(10, 50))
  rows = np.load(bad / 'part001.npy')
  rows[17, 2] = np.nan
  np.save(bad / 'part001.npy', rows)
  batches = ShardBatches(_load(bad, val_fraction=0.0, test_fraction=0.0).shards, 10, 0,
                         sharding.make_mesh())
  assert 'part001.npy: row 17, column 2 is nan' in one_line_error(batches.block, 0, 6)
  config = _dense(good)
  config.train.device_data = 'yes'
  assert 'read from disk a window at a time' in one_line_error(build, config, place=False)


def _dense(path):
  """mnist_ae:tiny's dense autoencoder (d-32-8-32-d, MSE, linear output; 60 steps of 50 rows,
  10 a block, checkpoints at 30 and 60) on dataset npy at `path`."""
  config = experiment('mnist_ae')
  config.model.output_activation = 'linear'
  config.loss.reconstruction.kind = 'mse'
  config.train.progress = False
  config.evals.plots.every = -1
  config.dataset = defaults.dataset('npy')
  config.dataset.path = str(path)
  return config


def _config(tmp_path):
  """3 shards of 300 rows x 16 (sparse sums of 8 directions), val and test files of 100."""
  rng = np.random.default_rng(0)
  directions = rng.normal(size=(8, 16))
  rows = lambda n: ((rng.exponential(size=(n, 8)) * (rng.random((n, 8)) < 0.3)) @ directions)
  directory = tmp_path / 'acts'
  directory.mkdir()
  for i in range(3):
    np.save(directory / f'part{i}.npy', rows(300).astype(np.float32))
  for name in ('val', 'test'):
    np.save(tmp_path / f'{name}.npy', rows(100).astype(np.float32))
  config = _dense(directory)
  config.optimizer.learning_rate = 1e-2
  config.dataset.update(val_path=str(tmp_path / 'val.npy'), test_path=str(tmp_path / 'test.npy'),
                        shuffle_buffer=250)
  return config


def _state(workdir):
  ckpts = checkpoint.Checkpoints(workdir)
  _, arrays, _ = ckpts.restore_raw()
  ckpts.close()
  return arrays['state']


def test_training_on_shards_lowers_the_loss_and_a_resumed_run_is_bit_identical(tmp_path):
  config = _config(tmp_path)
  assert isinstance(build(config, place=False).batches, ShardBatches)
  full = train.train_and_evaluate(config, tmp_path / 'full')
  losses = [r['train/loss'] for r in read_jsonl(tmp_path / 'full' / 'metrics.jsonl')
            if 'train/loss' in r]
  assert full['step'] == 60 and losses[-1] < 0.8 * losses[0], losses
  out = train.train_and_evaluate(config, tmp_path / 'resumed', should_stop=lambda step: step == 20)
  assert out['step'] == 20 and out['interrupted'] == 'should_stop'
  resumed = train.train_and_evaluate(config, tmp_path / 'resumed')
  assert resumed['resumed_from_step'] == 20 and resumed['step'] == 60
  jax.tree.map(np.testing.assert_array_equal, _state(tmp_path / 'full'),
               _state(tmp_path / 'resumed'))
  configs = [config, config.copy_and_resolve_references()]
  configs[1].seed = 1
  dirs = [tmp_path / 'together0', tmp_path / 'together1']
  assert 'train these runs one by one' in one_line_error(train.train_together, configs, dirs)
  assert not any(d.exists() for d in dirs)


def test_block_buffers_are_reused_only_when_nothing_holds_them(tmp_path):
  from aelab.trainer.shard_batches import BlockBuffers
  pool = BlockBuffers(keep=2)
  a = pool.get((100, 3))
  b = pool.get((100, 3))
  assert a.ctypes.data != b.ctypes.data and a.ctypes.data % 64 == 0 == b.ctypes.data % 64
  where = a.ctypes.data
  a_view = a[10:]                      # a view (as a device array aliasing it holds one)
  del a
  assert pool.get((100, 3)).ctypes.data not in (where, b.ctypes.data)   # beyond keep: its own
  del a_view
  assert pool.get((100, 3)).ctypes.data == where   # free again: reused, not new memory
  # blocks held (large enough for XLA:CPU to alias them) are never written over by later ones
  batches = _batches(tmp_path, buffer=4000, batch=256, sizes=(4000, 4000))
  held = [batches.block(4 * i, 4)[0]['x'] for i in range(3)]
  first = [np.asarray(x).copy() for x in held]
  for i in range(3, 7):
    batches.block(4 * i, 4)
  for x, want in zip(held, first):
    np.testing.assert_array_equal(np.asarray(x), want)
  np.testing.assert_array_equal(np.asarray(batches.block(4, 4)[0]['x'])[..., 0],
                                batches.row_ids(4, 4))
