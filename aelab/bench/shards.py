"""Benchmark of the shard reader against the disk: epochs of a directory of .npy shards
streamed by ShardBatches (aelab/trainer/shard_batches.py), against the disk's sequential read
rate on the same files, measured in the same run.

    python -m aelab.bench.shards --dir=DIR [--shards=3] [--gib=1.0] [--dim=768] [--batch=4096] \\
        [--steps_per_call=8] [--shuffle_buffer=262144] [--epochs=3] [--out=FILE.json]

1. Writes `--shards` float32 [n, dim] files DIR/shardNNN.npy of about `--gib` GiB each (random
   rows, a chunk at a time; files already there with that shape are kept), fsynced.
2. Evicts them from the page cache (posix_fadvise DONTNEED) and checks it (mincore: the fraction
   of their pages still cached, reported), then reads each cold with `dd if=FILE of=/dev/null
   bs=8M` (its own bytes and seconds), evicts again and reads each with a plain loop of 8 MiB
   os.preadv calls: the disk's sequential read rate, two ways.
3. Evicts again and, in a subprocess of its own (so the writing's memory does not count), streams
   `--epochs` epochs through one ShardBatches, block(start, --steps_per_call) as training does:
   a 1-device CPU mesh, every block a jax array placed on the device and waited for, every range
   the reader reads dropped from the page cache once read (so each epoch reads the disk, as an
   epoch of data larger than memory would). Before each epoch after the first, the files are
   read cold by dd and by the preadv loop again, outside the clock: this project's VMs' disks
   swing 2-4x within a minute, so the disk is measured beside every epoch and pooled. The rate
   reported is that of the epochs after the first (the steady state of training, the reader's
   buffers its own from the first); the first epoch's is shown beside it. Also the process's
   peak RSS (VmHWM) beside its RSS after the same imports and the backend's start, before the
   first read (the baseline), and the reader's bound: at most three windows (two in use, the
   next read ahead), under 6 x shuffle_buffer rows.

The table goes to stdout, everything to `--out` as JSON. Only DIR/shardNNN.npy are read; other
files in DIR are left alone.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import pathlib
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from aelab import cli, files
from aelab.errors import AelabError

PROG = 'python -m aelab.bench.shards'
READ_BYTES = 8 << 20      # dd's bs and the preadv loop's reads
CHUNK_BYTES = 64 << 20    # rows generated and written at a time
CACHED_OK = 0.01          # eviction counts as done when at most this fraction stays cached


def shard_rows(gib: float, dim: int) -> int:
  """Rows of one shard: the most float32 [dim] rows in `gib` GiB (at least 1)."""
  return max(1, int(gib * (1 << 30)) // (dim * 4))


def shard_paths(directory: str | pathlib.Path, shards: int) -> list[pathlib.Path]:
  """DIR/shard000.npy .. : the files the benchmark writes and reads, in name order."""
  return [pathlib.Path(directory) / f'shard{i:03d}.npy' for i in range(shards)]


def _has_rows(path: pathlib.Path, rows: int, dim: int) -> bool:
  """True when `path` is a whole C-ordered float32 [rows, dim] .npy file."""
  try:
    with open(path, 'rb') as f:
      read = {(1, 0): np.lib.format.read_array_header_1_0,
              (2, 0): np.lib.format.read_array_header_2_0}.get(np.lib.format.read_magic(f))
      if read is None:
        return False
      shape, fortran, dtype = read(f)
      offset = f.tell()
  except (OSError, ValueError):
    return False
  return (shape == (rows, dim) and not fortran and dtype == np.float32
          and os.path.getsize(path) == offset + rows * dim * 4)


def write_shards(directory: str | pathlib.Path, shards: int, rows: int, dim: int,
                 seed: int = 0) -> list[dict]:
  """Writes the shards that are not already there (random rows, CHUNK_BYTES at a time, fsynced,
  each renamed into place whole). Returns [{path, rows, bytes, written}] per shard."""
  out = []
  header = {'descr': np.lib.format.dtype_to_descr(np.dtype(np.float32)), 'fortran_order': False,
            'shape': (rows, dim)}
  step = max(1, CHUNK_BYTES // (dim * 4))
  for i, path in enumerate(shard_paths(directory, shards)):
    written = not _has_rows(path, rows, dim)
    if written:
      rng = np.random.default_rng([seed, i])
      with files.atomic(path) as tmp, open(tmp, 'wb') as f:
        np.lib.format.write_array_header_1_0(f, header)
        for start in range(0, rows, step):
          rng.random((min(step, rows - start), dim), dtype=np.float32).tofile(f)
        f.flush()
        os.fsync(f.fileno())
    out.append({'path': str(path.absolute()), 'rows': rows, 'bytes': os.path.getsize(path),
                'written': written})
  if any(s['written'] for s in out):
    fd = os.open(directory, os.O_RDONLY)
    try:
      os.fsync(fd)  # the renames
    finally:
      os.close(fd)
  return out


def _libc():
  libc = ctypes.CDLL(None, use_errno=True)
  libc.mmap.restype = ctypes.c_void_p
  libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                        ctypes.c_int, ctypes.c_long]
  libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
  libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
  return libc


def cached_fraction(path: str | pathlib.Path) -> float | None:
  """The fraction of the file's pages in the page cache (mincore on a mapping that touches no
  page); None where it cannot be told."""
  size = os.path.getsize(path)
  if not size:
    return 0.0
  try:
    libc = _libc()
  except (OSError, AttributeError):
    return None
  fd = os.open(path, os.O_RDONLY)
  try:
    addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if addr is None or addr == ctypes.c_void_p(-1).value:
      return None
    try:
      pages = -(-size // mmap.PAGESIZE)
      vec = (ctypes.c_ubyte * pages)()
      if libc.mincore(addr, size, vec) != 0:
        return None
      return float((np.frombuffer(vec, np.uint8) & 1).sum()) / pages
    finally:
      libc.munmap(addr, size)
  finally:
    os.close(fd)


def evict(paths: Sequence[str | pathlib.Path]) -> list[float | None]:
  """Drops the files' pages from the page cache (fsync, then posix_fadvise DONTNEED). Returns
  the fraction of each file's pages still cached after it (cached_fraction)."""
  for path in paths:
    fd = os.open(path, os.O_RDONLY)
    try:
      os.fsync(fd)  # dirty pages are not dropped
      os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
      os.close(fd)
  return [cached_fraction(p) for p in paths]


def dd_read(path: str | pathlib.Path) -> dict:
  """`dd if=path of=/dev/null bs=8M`: {bytes, seconds} as dd reports them (the wall clock
  around it where its summary cannot be parsed)."""
  t = time.perf_counter()
  done = subprocess.run(['dd', f'if={path}', 'of=/dev/null', f'bs={READ_BYTES}'],
                        capture_output=True, text=True, env={**os.environ, 'LC_ALL': 'C'})
  wall = time.perf_counter() - t
  if done.returncode:
    raise AelabError(f'dd if={path} failed: {" ".join(done.stderr.split())}')
  found = re.search(r'^(\d+) bytes.*copied, ([0-9.e+-]+) s', done.stderr, re.MULTILINE)
  if found is None:
    return {'bytes': os.path.getsize(path), 'seconds': wall, 'from': 'wall clock'}
  return {'bytes': int(found.group(1)), 'seconds': float(found.group(2)), 'from': 'dd'}


def preadv_read(path: str | pathlib.Path) -> dict:
  """The file read front to back by os.preadv into one 8 MiB buffer: {bytes, seconds}."""
  view = memoryview(bytearray(READ_BYTES))
  at, t = 0, time.perf_counter()
  with open(path, 'rb', buffering=0) as f:
    while got := os.preadv(f.fileno(), [view], at):
      at += got
  return {'bytes': at, 'seconds': time.perf_counter() - t, 'from': 'preadv'}


def read_cold(paths: Sequence[str | pathlib.Path]) -> dict:
  """The files read by dd, then by the preadv loop, each after an eviction: {dd, preadv: their
  _rate, cached: {dd, preadv: the fraction of each file cached before that read (evict)}}."""
  out = {'cached': {}}
  for name, read in (('dd', dd_read), ('preadv', preadv_read)):
    out['cached'][name] = evict(paths)
    out[name] = _rate([read(p) for p in paths])
  return out


def _rate(reads: list[dict]) -> dict:
  """{bytes, seconds, bytes_per_s, per_file} of reads one after the other."""
  total, seconds = sum(r['bytes'] for r in reads), sum(r['seconds'] for r in reads)
  return {'bytes': total, 'seconds': seconds, 'bytes_per_s': total / seconds, 'per_file': reads}


def vm_hwm() -> int:
  """This process's peak resident set, bytes (/proc/self/status VmHWM, else ru_maxrss)."""
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  import resource
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _check_block(batch: int, steps_per_call: int, shuffle_buffer: int) -> None:
  if steps_per_call * batch > shuffle_buffer:
    raise AelabError(f'--steps_per_call x --batch = {steps_per_call * batch} exceeds '
                     f'--shuffle_buffer = {shuffle_buffer}: the reader holds at most three windows '
                     'only for blocks within one window; lower them or raise the buffer')


def _cold_reader():
  """ShardBatches whose every read is dropped from the page cache once done (posix_fadvise
  DONTNEED on the range), so that every epoch reads the disk, as an epoch of data larger than
  memory does; with `settle`, which waits for the window being read ahead."""
  from aelab.trainer.shard_batches import ShardBatches

  class ColdReads(ShardBatches):

    def _read(self, shard, start, stop, out):
      super()._read(shard, start, stop, out)
      row_bytes = out.nbytes // max(1, len(out))
      fd = os.open(self.paths[shard], os.O_RDONLY)
      try:
        os.posix_fadvise(fd, int(self._map(shard).offset) + start * row_bytes,
                         (stop - start) * row_bytes, os.POSIX_FADV_DONTNEED)
      finally:
        os.close(fd)

    def settle(self):
      for read in self._ahead.values():
        read.result()

  return ColdReads


def stream(paths: Sequence[str | pathlib.Path], batch: int, steps_per_call: int,
           shuffle_buffer: int, seed: int = 0, epochs: int = 1, disk_between: bool = False,
           visit: Callable[[int, np.ndarray], None] | None = None) -> dict:
  """`epochs` epochs of the shards through one ShardBatches (every read cold: _cold_reader), a
  block of `steps_per_call` steps at a time (the last of an epoch shorter) on a 1-device CPU mesh,
  each block waited for; an epoch's clock also waits for the window read ahead for the next
  (so each epoch is timed for reading one epoch's bytes). With `disk_between`, before every
  epoch after the first the files are read cold by dd and by the preadv loop, outside the clock:
  the disk's rate beside each epoch (this project's VMs' disks swing 2-4x within a minute).
  `visit(start, x)` sees each block (for checks; outside the clock). Returns {rows, bytes,
  seconds, bytes_per_s: those of the steady state (the epochs after the first, whose buffers are
  the reader's own from the first; the first alone where there is one), first_epoch_bytes_per_s,
  per_epoch: [{seconds, bytes_per_s, dd_bytes_per_s, preadv_bytes_per_s}], disk_between:
  [read_cold's], steps, blocks, rows_per_epoch, rows_unused, window_rows_max,
  baseline_rss_bytes}."""
  import jax
  from jax.sharding import Mesh
  from aelab.data import npy
  from aelab.data.dataset import Shards
  from aelab.trainer import sharding
  _check_block(batch, steps_per_call, shuffle_buffer)
  arrays = [npy.open_rows(pathlib.Path(p)) for p in paths]  # headers only: memory maps
  shards = Shards(paths=tuple(str(pathlib.Path(p).absolute()) for p in paths),
                  rows=tuple(len(x) for x in arrays), shuffle_buffer=shuffle_buffer)
  row_bytes = int(np.prod(arrays[0].shape[1:])) * 4
  del arrays
  mesh = Mesh(np.asarray(jax.devices('cpu')[:1]), (sharding.DATA_AXIS,))
  sharding.check_batch_size(batch, mesh)  # as trainer/setup.py's _shard_batches
  if len(shards) < batch:
    raise AelabError(f'--batch={batch} exceeds the {len(shards)} rows of the shards; lower it')
  batches = _cold_reader()(shards, batch, seed, mesh)
  jax.block_until_ready(jax.device_put(np.zeros(1, np.float32), jax.devices('cpu')[0]))
  baseline = vm_hwm()
  steps, blocks, per_epoch, disk = batches.steps_per_epoch, 0, [], []
  for epoch in range(epochs):
    if disk_between and epoch:
      disk.append(read_cold(paths))
      evict(paths)
    seconds, end = 0.0, (epoch + 1) * steps
    for start in range(epoch * steps, end, steps_per_call):
      t = time.perf_counter()
      x = batches.block(start, min(steps_per_call, end - start))[0]['x']
      jax.block_until_ready(x)
      if start + steps_per_call >= end:
        batches.settle()
      seconds += time.perf_counter() - t
      blocks += 1
      if visit is not None:
        visit(start, np.asarray(x))
    per_epoch.append({'seconds': seconds, 'bytes_per_s': steps * batch * row_bytes / seconds,
                      **{f'{name}_bytes_per_s': disk[-1][name]['bytes_per_s']
                         if disk_between and epoch else None for name in ('dd', 'preadv')}})
  steady = per_epoch[1:] or per_epoch
  rows = len(steady) * steps * batch
  seconds = sum(e['seconds'] for e in steady)
  return {'rows': rows, 'bytes': rows * row_bytes, 'seconds': seconds,
          'bytes_per_s': rows * row_bytes / seconds,
          'first_epoch_bytes_per_s': per_epoch[0]['bytes_per_s'], 'per_epoch': per_epoch,
          'disk_between': disk, 'steps': steps, 'blocks': blocks, 'epochs': epochs,
          'rows_per_epoch': len(shards), 'rows_unused': len(shards) - steps * batch,
          'window_rows_max': int(np.diff(batches.order.bounds).max()),
          'baseline_rss_bytes': baseline}


def stream_isolated(paths: Sequence[str | pathlib.Path], batch: int, steps_per_call: int,
                    shuffle_buffer: int, seed: int = 0, epochs: int = 1,
                    disk_between: bool = False) -> dict:
  """`stream` in a fresh process (JAX on the CPU), so that only its own memory counts. Returns
  stream's dict with peak_rss_bytes (the process's VmHWM after the last epoch)."""
  spec = json.dumps({'paths': [str(p) for p in paths], 'batch': batch,
                     'steps_per_call': steps_per_call, 'shuffle_buffer': shuffle_buffer,
                     'seed': seed, 'epochs': epochs, 'disk_between': disk_between})
  done = subprocess.run([sys.executable, '-m', 'aelab.bench.shards', f'--stream_child={spec}'],
                        capture_output=True, text=True, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  lines = done.stdout.strip().splitlines()
  if done.returncode or not lines:
    raise AelabError(f'the streaming process failed (exit {done.returncode}): '
                     f'{" ".join(done.stderr.strip().splitlines()[-1:]) or "no output"}')
  return json.loads(lines[-1])


def _stream_child(spec: str) -> None:
  """The subprocess of stream_isolated: prints stream's dict and the peak RSS as one JSON line."""
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  result = stream(**json.loads(spec))
  print(json.dumps({**result, 'peak_rss_bytes': vm_hwm()}), flush=True)


def benchmark(directory: str | pathlib.Path, *, shards: int = 3, gib: float = 1.0, dim: int = 768,
              batch: int = 4096, steps_per_call: int = 8, shuffle_buffer: int = 262144,
              seed: int = 0, epochs: int = 3,
              log: Callable[[str], None] = lambda msg: None) -> dict:
  """The module doc's three phases. Returns {settings, files, cached, disk: {dd, preadv, dd_all,
  preadv_all}, stream, memory, ratio, ratio_preadv, ratio_by_epoch, notes}: rates in bytes/s,
  memory in bytes, `cached` the fraction of each file's pages cached before each cold read (None:
  not known); `ratio` (`ratio_preadv`) the steady stream's rate over every dd (preadv loop) read
  of the run pooled; ratio_by_epoch: [stream / dd, stream / preadv] of each epoch after the
  first, against the reads just before it."""
  for name, value in (('shards', shards), ('dim', dim), ('batch', batch), ('epochs', epochs),
                      ('steps_per_call', steps_per_call), ('shuffle_buffer', shuffle_buffer)):
    if value < 1:
      raise AelabError(f'--{name}={value}; it must be at least 1')
  if not gib > 0:
    raise AelabError(f'--gib={gib}; it must be positive')
  _check_block(batch, steps_per_call, shuffle_buffer)
  if shards * shard_rows(gib, dim) < batch:
    raise AelabError(f'--batch={batch} exceeds the {shards * shard_rows(gib, dim)} rows of the '
                     'shards; lower it or raise --gib')
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  rows = shard_rows(gib, dim)
  log(f'shards: {shards} x [{rows}, {dim}] float32 in {directory}')
  written = write_shards(directory, shards, rows, dim, seed)
  paths = [s['path'] for s in written]
  log('disk: dd and the preadv loop, cold')
  first = read_cold(paths)
  cached = {**first['cached'], 'stream': evict(paths)}
  log(f'stream: {epochs} epoch(s) through ShardBatches, every read cold; dd and preadv before '
      'each after the first')
  st = stream_isolated(paths, batch, steps_per_call, shuffle_buffer, seed, epochs,
                       disk_between=True)
  peak, base = st.pop('peak_rss_bytes'), st.pop('baseline_rss_bytes')
  for i, reads in enumerate(st['disk_between']):
    cached.update({f'{name} before epoch {i + 2}': f for name, f in reads['cached'].items()})
  memory = {'peak_rss_bytes': peak, 'baseline_rss_bytes': base, 'increment_bytes': peak - base,
            'bound_bytes': 6 * shuffle_buffer * dim * 4,
            'three_windows_bytes': 3 * st['window_rows_max'] * dim * 4}
  notes = []
  for phase, fractions in cached.items():
    if any(f is None for f in fractions):
      notes.append(f'before {phase}: could not tell whether the files left the page cache')
    elif max(fractions) > CACHED_OK:
      notes.append(f'before {phase}: eviction incomplete, up to {max(fractions):.1%} of a file '
                   'still cached; that read is not cold')
  every = {name: _rate([read for reads in [first] + st['disk_between']
                        for read in reads[name]['per_file']]) for name in ('dd', 'preadv')}
  return {'settings': {'dir': str(directory.absolute()), 'shards': shards, 'gib': gib,
                       'dim': dim, 'batch': batch, 'steps_per_call': steps_per_call,
                       'shuffle_buffer': shuffle_buffer, 'seed': seed, 'epochs': epochs,
                       'rows_per_shard': rows},
          'files': written, 'cached': cached,
          'disk': {'dd': first['dd'], 'preadv': first['preadv'], 'dd_all': every['dd'],
                   'preadv_all': every['preadv']}, 'stream': st, 'memory': memory,
          'ratio': st['bytes_per_s'] / every['dd']['bytes_per_s'],
          'ratio_preadv': st['bytes_per_s'] / every['preadv']['bytes_per_s'],
          'ratio_by_epoch': [[e['bytes_per_s'] / e['dd_bytes_per_s'],
                              e['bytes_per_s'] / e['preadv_bytes_per_s']]
                             for e in st['per_epoch'] if e['dd_bytes_per_s']],
          'notes': notes}


def table(result: dict) -> str:
  """The fixed-width summary of `benchmark`'s result."""
  mb, gib = lambda b: f'{b / 1e6:,.0f} MB/s', lambda b: f'{b / (1 << 30):.2f} GiB'  # noqa: E731
  st, mem, s = result['stream'], result['memory'], result['settings']
  steady = 'epochs 2..' if s['epochs'] > 1 else 'its one epoch'
  reads = len(st['disk_between']) + 1
  rows = [
      ('disk read, dd bs=8M (cold), first', mb(result['disk']['dd']['bytes_per_s'])),
      ('disk read, preadv 8 MiB loop (cold), first', mb(result['disk']['preadv']['bytes_per_s'])),
      ('stream, first epoch (its buffers new)', mb(st['first_epoch_bytes_per_s'])),
  ] + [(f'  epoch {i + 1}: stream / dd / preadv just before',
        f'{e["bytes_per_s"] / 1e6:,.0f} / {e["dd_bytes_per_s"] / 1e6:,.0f} / '
        f'{e["preadv_bytes_per_s"] / 1e6:,.0f}')
       for i, e in enumerate(st['per_epoch']) if e['dd_bytes_per_s']] + [
      (f'disk read, all {reads} dd runs pooled', mb(result['disk']['dd_all']['bytes_per_s'])),
      (f'disk read, all {reads} preadv runs pooled',
       mb(result['disk']['preadv_all']['bytes_per_s'])),
      (f'stream, {steady} ({st["rows"]:,} rows)', mb(st['bytes_per_s'])),
      ('ratio stream / dd (pooled)', f'{result["ratio"]:.3f}'),
      ('ratio stream / preadv (pooled)', f'{result["ratio_preadv"]:.3f}'),
      ('peak RSS of the streaming process', gib(mem['peak_rss_bytes'])),
      ('  its RSS before the first read', gib(mem['baseline_rss_bytes'])),
      ('  increment', gib(mem['increment_bytes'])),
      ('  three windows as allocated', gib(mem['three_windows_bytes'])),
      (f'bound: 6 x {s["shuffle_buffer"]:,} rows x {s["dim"]} x 4 B', gib(mem['bound_bytes'])),
  ]
  width = max(len(name) for name, _ in rows)
  title = (f'aelab.bench.shards: {s["shards"]} x {s["rows_per_shard"]:,} rows x {s["dim"]} '
           f'float32, batch {s["batch"]}, steps_per_call {s["steps_per_call"]}')
  lines = [title] + [f'  {name:<{width}}  {value:>14}' for name, value in rows]
  return '\n'.join(lines + [f'  note: {n}' for n in result['notes']])


def _parser() -> argparse.ArgumentParser:
  parser = cli.Parser(prog=PROG, description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--dir', help='where the shards are written and read (required)')
  parser.add_argument('--shards', type=int, default=3, help='how many shard files')
  parser.add_argument('--gib', type=float, default=1.0, help='GiB per shard (about)')
  parser.add_argument('--dim', type=int, default=768, help='floats per row')
  parser.add_argument('--batch', type=int, default=4096, help='rows per step')
  parser.add_argument('--steps_per_call', type=int, default=8, help='steps per block')
  parser.add_argument('--shuffle_buffer', type=int, default=262144,
                      help="the fewest rows in a window (dataset npy's shuffle_buffer)")
  parser.add_argument('--seed', type=int, default=0, help='of the rows written and the order')
  parser.add_argument('--epochs', type=int, default=3,
                      help='epochs streamed; the rate is that of those after the first')
  parser.add_argument('--out', default=None, help='write the results as JSON to this file')
  parser.add_argument('--stream_child', default=None, help=argparse.SUPPRESS)
  return parser


def main(argv: Sequence[str] | None = None) -> dict:
  """Runs the benchmark of the command line `argv`, prints the table; returns the result."""
  args = _parser().parse_args(argv)
  if args.stream_child is not None:
    _stream_child(args.stream_child)
    return {}
  if not args.dir:
    raise AelabError(f'--dir is required: where the shards go (see {PROG} --help)')
  if args.out:
    files.check_writable(args.out)
  log = lambda msg: print(f'aelab.bench.shards: {msg}', file=sys.stderr, flush=True)  # noqa: E731
  result = benchmark(args.dir, shards=args.shards, gib=args.gib, dim=args.dim, batch=args.batch,
                     steps_per_call=args.steps_per_call, shuffle_buffer=args.shuffle_buffer,
                     seed=args.seed, epochs=args.epochs, log=log)
  print(table(result), flush=True)
  if args.out:
    files.write_json(args.out, result)
  return result


def run(argv: Sequence[str] | None = None) -> None:
  with cli.guard():
    main(list(sys.argv[1:] if argv is None else argv))


if __name__ == '__main__':
  run()
