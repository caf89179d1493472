"""Writes a streamed source's training rows to disk:
`python -m aelab.dump --config=experiments/sae_synth.py --out=DIR --rows=20000000`.

A streamed source (e.g. `synth_sae`) generates its training rows inside the train step and
stores nothing. Dumped, the same rows train other tools, or several aelab runs at the cost of
generating them once. DIR gets
- `train/part-00000.npy`, ...: float32 shards of at most --shard_gib GiB, in order. Batch t of
  the config's batch size is the batch t a streamed run of this config trains on;
- `val.npy`, `test.npy`: the source's held-out rows;
- `truth.npz`: the true feature directions and each held-out row's true codes, where the source
  has them (the `sae` evaluator's ground truth: dataset.truth_path);
- `source.json`: what was dumped, and the dataset fields that train on it (the `npy` source).

An interrupted dump keeps its whole shards; the same command writes the rest.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from collections.abc import Sequence

from aelab import cli, files
from aelab.errors import AelabError

PROG = 'python -m aelab.dump'
BLOCK = 32  # batches generated per jitted call


def main(config, flags, spec: str, overrides: list[str]) -> None:
  del overrides
  import jax
  import numpy as np
  import tqdm

  from aelab import data
  from aelab.data import shard_writer
  from aelab.trainer.batches import stream_key

  if flags.rows < 1 or flags.shard_gib <= 0:
    raise AelabError(f'--rows={flags.rows}, --shard_gib={flags.shard_gib}: give positive values')
  out = pathlib.Path(flags.out)
  batch = int(config.train.batch_size)
  ds = data.load(config.dataset, config.seed)
  if ds.stream is None:
    raise AelabError(f'dataset {ds.name!r} is not streamed: its rows are already data '
                     '(train on them as they are)')
  steps = -(-flags.rows // batch)
  rows = steps * batch
  per_shard = shard_writer.shard_rows(ds.feature_shape, int(flags.shard_gib * 2**30),
                                      multiple=batch)
  described = {'dumped_by': PROG, 'config': spec, 'dataset': config.dataset.to_dict(),
               'seed': int(config.seed), 'batch_size': batch, 'rows': rows,
               'rows_per_shard': per_shard}
  _check_same(out / 'source.json', described)
  files.write_json(out / 'source.json', described)  # before any shard: a rerun checks against it

  arrays, key = jax.device_put(ds.stream.arrays), stream_key(config.seed)

  @jax.jit
  def block(arrays, t0):  # batches t0 .. t0 + BLOCK - 1, as a streamed run draws them
    return jax.lax.map(lambda t: ds.stream.sample(arrays, jax.random.fold_in(key, t), batch),
                       t0 + jax.numpy.arange(BLOCK, dtype=jax.numpy.int32))

  def produce(start: int, n: int) -> np.ndarray:  # the arrays passed, not baked in as constants
    return np.asarray(block(arrays, start // batch)).reshape(-1, *ds.feature_shape)[:n]

  t = time.time()
  with tqdm.tqdm(total=rows, unit='rows', unit_scale=True, desc='dump', file=sys.stderr) as bar:
    shards = shard_writer.write(out / 'train', rows, ds.feature_shape, produce, per_shard,
                                chunk=BLOCK * batch, progress=bar.update)
  for name in ('val', 'test'):
    with files.atomic(out / f'{name}.npy') as tmp, open(tmp, 'wb') as f:
      np.save(f, getattr(ds, name).x)
  if ds.truth is not None:
    with files.atomic(out / 'truth.npz') as tmp, open(tmp, 'wb') as f:
      np.savez(f, directions=ds.truth, val_codes=ds.val.truth_codes,
               test_codes=ds.test.truth_codes)
  fields = {'name': 'npy', 'path': str(out / 'train'), 'val_path': str(out / 'val.npy'),
            'test_path': str(out / 'test.npy'),
            **({'truth_path': str(out / 'truth.npz')} if ds.truth is not None else {})}
  files.write_json(out / 'source.json', {**described, 'train_with': fields,
                                         'source': ds.source})
  print(f'aelab: {rows} rows in {len(shards)} shards in {out / "train"} '
        f'({time.time() - t:.0f} s); train on them with '
        + ' '.join(f'--config.dataset.{k}={v}' for k, v in fields.items()), flush=True)


def _check_same(path: pathlib.Path, described: dict) -> None:
  """A directory dumped before holds the same dump (then its whole shards are kept)."""
  if not path.is_file():
    return
  held = json.loads(path.read_text())
  differ = sorted(k for k in described if held.get(k) != described[k])
  if differ:
    raise AelabError(f'{path.parent} holds another dump (its {", ".join(differ)} differ); give '
                     'a new --out')


def run(argv: Sequence[str] | None = None) -> None:
  flags = (cli.Flag('out', str, None, 'The directory to write (see above).', required=True),
           cli.Flag('rows', int, 0, 'Training rows to write (rounded up to whole batches).',
                    required=True),
           cli.Flag('shard_gib', float, 1.0, 'The largest shard, in GiB.'))
  cli.main(argv, prog=PROG, doc=__doc__, flags=flags, run=main)


if __name__ == '__main__':
  run()
