"""`python -m aelab.bench.shards` (aelab/bench/shards.py) on a tiny case: each epoch delivers every
row of the shards exactly once, every read leaves the page cache, its byte counts are the rows
delivered x row bytes, files already written are kept, and the JSON holds every field. Rates are
not asserted (benchmarks measure them; tests do not time anything)."""

import json

import numpy as np
import pytest

from aelab.bench import shards as bench

ROWS, DIM = 4096, 16   # 256 KiB a shard; 2 shards: 8192 rows, a multiple of the batch


def _sorted(rows: np.ndarray) -> np.ndarray:
  return rows[np.lexsort(rows.T[::-1])]


@pytest.mark.quick
def test_each_epoch_delivers_every_row_of_the_shards_once_and_counts_its_bytes(tmp_path):
  written = bench.write_shards(tmp_path, 2, ROWS, DIM, seed=1)
  assert [s['written'] for s in written] == [True, True]
  assert [s['written'] for s in bench.write_shards(tmp_path, 2, ROWS, DIM, seed=1)] == [False] * 2
  paths = [s['path'] for s in written]
  every = np.concatenate([np.load(p) for p in paths])
  assert every.shape == (2 * ROWS, DIM) and len(np.unique(every, axis=0)) == len(every)
  for fraction in bench.evict(paths):
    assert fraction is None or 0.0 <= fraction <= 1.0
  blocks = []
  result = bench.stream(paths, batch=64, steps_per_call=4, shuffle_buffer=1024, epochs=2,
                        visit=lambda start, x: blocks.append((start, x)))
  assert [start for start, _ in blocks] == list(range(0, 256, 4))   # 128 steps an epoch
  for epoch in (blocks[:32], blocks[32:]):
    delivered = np.concatenate([x.reshape(-1, DIM) for _, x in epoch])
    np.testing.assert_array_equal(_sorted(delivered), _sorted(every))  # each row once, as written
  assert not np.array_equal(blocks[0][1], blocks[32][1])   # epoch 2 in its own order
  # The rate is epoch 2's (the steady state): one epoch's rows and bytes.
  assert result['rows'] == 2 * ROWS and result['rows_unused'] == 0
  assert result['bytes'] == 2 * ROWS * DIM * 4 and result['epochs'] == 2
  assert result['blocks'] == len(blocks) == 64 and result['steps'] == 128
  assert [e['dd_bytes_per_s'] for e in result['per_epoch']] == [None, None]   # none asked for
  assert result['bytes_per_s'] == pytest.approx(result['bytes'] / result['per_epoch'][1]['seconds'])
  for fraction in bench.cached_fraction(paths[0]), bench.cached_fraction(paths[1]):
    # the reads dropped from the page cache (a cached read leaves 1.0); what stays is the
    # header's memory map and the kernel's read-around of it (up to 32 pages of these 65)
    assert fraction is None or fraction < 0.5


def test_the_command_line_writes_the_table_and_every_json_field(tmp_path, capsys):
  out = tmp_path / 'bench.json'
  bench.main([f'--dir={tmp_path / "shards"}', '--shards=2', f'--gib={ROWS * DIM * 4 / 2**30}',
              f'--dim={DIM}', '--batch=100', '--steps_per_call=3', '--shuffle_buffer=1000',
              '--epochs=2', f'--out={out}'])
  assert 'ratio stream / dd (pooled)' in capsys.readouterr().out
  result = json.loads(out.read_text())
  assert {'settings', 'files', 'cached', 'disk', 'stream', 'memory', 'ratio', 'ratio_preadv',
          'ratio_by_epoch', 'notes'} <= set(result)
  files = result['files']
  assert len(files) == 2 and all(f['rows'] == ROWS and f['written'] for f in files)
  size = sum(f['bytes'] for f in files)
  for how in ('dd', 'preadv'):  # every byte of every file, read: first, then before epoch 2
    assert result['disk'][how]['bytes'] == size and result['disk'][how]['bytes_per_s'] > 0
    assert result['disk'][f'{how}_all']['bytes'] == 2 * size
  stream = result['stream']
  assert stream['rows'] == 81 * 100 and stream['rows_unused'] == 2 * ROWS - 8100
  assert stream['bytes'] == stream['rows'] * DIM * 4 and stream['blocks'] == 2 * 27
  assert len(stream['disk_between']) == 1 and stream['per_epoch'][1]['dd_bytes_per_s'] > 0
  memory = result['memory']
  assert memory['bound_bytes'] == 6 * 1000 * DIM * 4
  assert memory['peak_rss_bytes'] >= memory['baseline_rss_bytes'] > 0
  assert set(result['cached']) == {'dd', 'preadv', 'stream', 'dd before epoch 2',
                                   'preadv before epoch 2'}
  dd = result['disk']['dd_all']['bytes_per_s']
  assert result['ratio'] == pytest.approx(stream['bytes_per_s'] / dd)
  epoch = stream['per_epoch'][1]
  by_dd, by_preadv = (epoch['bytes_per_s'] / epoch[f'{how}_bytes_per_s']
                       for how in ('dd', 'preadv'))
  assert result['ratio_by_epoch'] == [pytest.approx([by_dd, by_preadv])]
