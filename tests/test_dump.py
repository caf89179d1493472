"""python -m aelab.dump (aelab/dump.py, aelab/data/shard_writer.py): a streamed source's rows
on disk are the batches a streamed run trains on, with its held-out rows and truth; an
interrupted dump keeps its whole shards and the rerun ends with the same files; a run on the
dump scores its dictionary against the truth."""

import hashlib
import types

import jax
import numpy as np
import pytest

from aelab import data, dump
from aelab.trainer import sharding
from aelab.trainer.batches import Streamed
from conftest import experiment, one_line_error

ROWS, SHARD_GIB = 1000, 0.00005   # batches of 128: 1024 rows; 13,107 bytes: 3 batches a shard


def _dump(out, rows=ROWS, arg='tiny'):
  config = experiment('sae_synth', arg)
  flags = types.SimpleNamespace(out=str(out), rows=rows, shard_gib=SHARD_GIB)
  dump.main(config, flags, f'experiments/sae_synth.py:{arg}', [])
  return config


def _digest(directory):
  return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(directory.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def dumped(tmp_path_factory):
  out = tmp_path_factory.mktemp('dump')
  return out, _dump(out)


def test_rows_are_the_streamed_runs_batches(dumped):
  out, config = dumped
  shards = sorted((out / 'train').glob('part-*.npy'))
  rows = np.concatenate([np.load(p) for p in shards])
  assert rows.shape == (1024, 32) and [len(np.load(p)) for p in shards] == [384, 384, 256]
  ds = data.load(config.dataset, config.seed)
  mesh = sharding.make_mesh()
  arrays, keys = Streamed(ds.stream, 128, config.seed, mesh).block(0, 8)
  for t in (0, 3, 7):
    batch = keys.batch(arrays, jax.numpy.int32(t), sharding.replicated(mesh))['x']
    # the same rows to the last bits of the matmul (its summation order is the program's)
    np.testing.assert_allclose(rows[t * 128:(t + 1) * 128], np.asarray(batch), atol=1e-6)
  assert not np.allclose(rows[:128], rows[128:256], atol=1e-3)
  np.testing.assert_array_equal(np.load(out / 'test.npy'), ds.test.x)
  with np.load(out / 'truth.npz') as truth:
    np.testing.assert_array_equal(truth['directions'], ds.truth)
    np.testing.assert_array_equal(truth['val_codes'], ds.val.truth_codes)


def test_an_interrupted_dump_keeps_whole_shards_and_ends_the_same(dumped, tmp_path):
  out, _ = dumped
  whole = _digest(out)
  again = tmp_path / 'again'
  _dump(again)
  first = again / 'train' / 'part-00000.npy'
  kept = first.stat().st_mtime_ns
  (again / 'train' / 'part-00001.npy').unlink()                      # never written
  np.save(again / 'train' / 'part-00002.npy', np.zeros((5, 32), np.float32))  # not this dump's
  (again / 'train' / '.part-00001.npy.99.tmp').write_bytes(b'half')  # a killed writer's file
  (again / 'test.npy').unlink()
  _dump(again)
  assert first.stat().st_mtime_ns == kept
  def same(digest):  # source.json names its own directory
    return {k: v for k, v in digest.items() if k != 'source.json' and not k.endswith('.tmp')}
  assert same(_digest(again)) == same(whole)
  assert not (again / 'train' / '.part-00001.npy.tmp').exists()


def test_another_dump_in_the_same_directory_is_refused(dumped):
  out, _ = dumped
  message = one_line_error(_dump, out, rows=2000)
  assert 'holds another dump' in message and 'rows' in message


def test_a_source_that_is_not_streamed_is_refused(tmp_path):
  config = experiment('sae_toy')
  flags = types.SimpleNamespace(out=str(tmp_path / 'd'), rows=100, shard_gib=1.0)
  assert 'is not streamed' in one_line_error(dump.main, config, flags, 'sae_toy', [])


def test_a_run_on_the_dump_is_scored_against_the_truth(dumped, tmp_path):
  from aelab.trainer import train
  out, _ = dumped
  config = experiment('sae_synth', f'tiny,dumped={out}')
  config.train.num_steps = 8
  summary = train.train_and_evaluate(config, tmp_path / 'run')
  test = summary['test']
  assert 0 < test['mcc'] <= 1 and 0 < test['f1'] <= 1 and test['l0'] == pytest.approx(8)
